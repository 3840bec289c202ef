//! Files the binary carries, so that one copied file is all a box needs: the systemd units and
//! the documented settings file (`atoll --print-file NAME`), and the web page's HTML, CSS,
//! script and icon (served by `http/ui`). They live in `assets/` and `systemd/` in the source
//! tree.

/// Name and text of each packaging file.
pub const FILES: &[(&str, &str)] = &[
    ("atoll.service", include_str!("../systemd/atoll.service")),
    ("atoll.sysusers", include_str!("../systemd/atoll.sysusers")),
    (
        "atoll-import.path",
        include_str!("../systemd/atoll-import.path"),
    ),
    (
        "atoll-import.service",
        include_str!("../systemd/atoll-import.service"),
    ),
    ("atoll.env", include_str!("../assets/atoll.env")),
];

/// The text of a packaging file, or the list of names there are.
pub fn file(name: &str) -> Result<&'static str, String> {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
        .ok_or_else(|| {
            let names: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
            format!(
                "--print-file: no file {name:?}; there are {}",
                names.join(", ")
            )
        })
}

/// A file of the web page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UiFile {
    pub name: &'static str,
    pub content_type: &'static str,
    pub text: &'static str,
}

/// The web page: static files, no build step, nothing fetched from elsewhere.
pub const UI: &[UiFile] = &[
    UiFile {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        text: include_str!("../assets/ui/index.html"),
    },
    UiFile {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        text: include_str!("../assets/ui/app.css"),
    },
    UiFile {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        text: include_str!("../assets/ui/app.js"),
    },
    UiFile {
        name: "icon.svg",
        content_type: "image/svg+xml",
        text: include_str!("../assets/ui/icon.svg"),
    },
];

/// A file of the web page by name.
pub fn ui_file(name: &str) -> Option<&'static UiFile> {
    UI.iter().find(|f| f.name == name)
}
