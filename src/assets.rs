//! Files the binary carries, so that one copied file is all a box needs: the systemd units and
//! the documented settings file (`atoll --print-file NAME`). The web page joins them when it
//! exists. They live in `assets/` and `systemd/` in the source tree.

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
