//! The web page's URLs: `(method, path, query)` -> [`UiRoute`], with page sizes clamped and the
//! repository name validated. Pure: no I/O.
//!
//! ```text
//! GET /  /ui  /ui/          the page (static HTML)
//! GET /ui/<file>            its CSS, script and icon (assets/ui/)
//! GET /ui/api/summary       holdings, disk, last GC, cache, who is asking and what they may do
//! GET /ui/api/repos         ?q=FILTER&n=&last=  repositories with their first tags
//! GET /ui/api/tags          ?repo=NAME&n=&last= more tags of one repository
//! GET /login                the Basic challenge, for a browser that reads anonymously
//! ```

use http_types::Method;

use crate::assets;
use crate::auth::Access;
use crate::error::{Error, Result};
use crate::reference::RepoName;

/// Repositories per page: by default, and at most.
pub const REPOS_PER_PAGE: (u32, u32) = (20, 100);
/// Tags shown with each repository of a page (more are fetched page by page).
pub const TAGS_PER_REPO: u32 = 10;
/// Tags per page of one repository: by default, and at most.
pub const TAGS_PER_PAGE: (u32, u32) = (50, 500);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UiRoute {
    Page,
    /// A file of `assets/ui/`, by name.
    Asset(&'static str),
    Summary,
    Repos {
        filter: String,
        last: Option<String>,
        n: u32,
    },
    Tags {
        name: RepoName,
        last: Option<String>,
        n: u32,
    },
    Login,
}

/// The route for a web page URL; `None` when the path is not one (the API's routing goes on).
pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Option<Result<UiRoute>> {
    let route = match path {
        "/" | "/ui" | "/ui/" | "/ui/index.html" => Ok(UiRoute::Page),
        "/login" => Ok(UiRoute::Login),
        "/ui/api/summary" => Ok(UiRoute::Summary),
        "/ui/api/repos" => Ok(repos(&pairs(query))),
        "/ui/api/tags" => tags(&pairs(query)),
        _ => match path.strip_prefix("/ui/") {
            Some(file) => assets::ui_file(file)
                .map(|f| UiRoute::Asset(f.name))
                .ok_or_else(|| Error::NotFound(format!("no page at /ui/{}", shorten(file)))),
            None => return None,
        },
    };
    Some(route.and_then(|r| match *method {
        Method::Get | Method::Head => Ok(r),
        _ => Err(Error::MethodNotAllowed(format!(
            "{method} is not allowed on the web page"
        ))),
    }))
}

impl UiRoute {
    /// What a client must be allowed to do: the page and its data are reads, like pulls; the
    /// login URL is open (it is where an anonymous reader gets the challenge).
    pub fn access(&self) -> Access {
        match self {
            UiRoute::Login => Access::Open,
            _ => Access::Read,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            UiRoute::Page => "ui_page",
            UiRoute::Asset(_) => "ui_asset",
            UiRoute::Summary | UiRoute::Repos { .. } | UiRoute::Tags { .. } => "ui_api",
            UiRoute::Login => "ui_login",
        }
    }
}

fn repos(q: &[(String, String)]) -> UiRoute {
    UiRoute::Repos {
        filter: get(q, "q").unwrap_or_default().trim().to_owned(),
        last: get(q, "last").filter(|l| !l.is_empty()).map(str::to_owned),
        n: page_size(get(q, "n"), REPOS_PER_PAGE),
    }
}

fn tags(q: &[(String, String)]) -> Result<UiRoute> {
    let name = get(q, "repo")
        .ok_or_else(|| Error::BadRequest("?repo= names the repository".into()))?
        .parse()
        .map_err(|e: crate::reference::NameError| Error::NameInvalid(e.to_string()))?;
    Ok(UiRoute::Tags {
        name,
        last: get(q, "last").filter(|l| !l.is_empty()).map(str::to_owned),
        n: page_size(get(q, "n"), TAGS_PER_PAGE),
    })
}

/// `n` from the query, within `1..=max`; the default when absent or not a number.
fn page_size(n: Option<&str>, (default, max): (u32, u32)) -> u32 {
    n.and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn shorten(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get_route(path: &str, query: Option<&str>) -> Option<Result<UiRoute>> {
        parse(&Method::Get, path, query)
    }

    #[test]
    fn routes_the_page_its_files_and_its_api() {
        for p in ["/", "/ui", "/ui/", "/ui/index.html"] {
            assert_eq!(get_route(p, None).unwrap().unwrap(), UiRoute::Page, "{p}");
        }
        assert_eq!(
            get_route("/ui/app.js", None).unwrap().unwrap(),
            UiRoute::Asset("app.js")
        );
        assert_eq!(
            get_route("/ui/api/summary", None).unwrap().unwrap(),
            UiRoute::Summary
        );
        assert_eq!(
            get_route("/ui/api/repos", Some("q=%20web%20&n=5&last=a%2Fb"))
                .unwrap()
                .unwrap(),
            UiRoute::Repos {
                filter: "web".into(),
                last: Some("a/b".into()),
                n: 5
            }
        );
        assert_eq!(
            get_route("/ui/api/tags", Some("repo=org/app&last=v1"))
                .unwrap()
                .unwrap(),
            UiRoute::Tags {
                name: "org/app".parse().unwrap(),
                last: Some("v1".into()),
                n: TAGS_PER_PAGE.0
            }
        );
        assert_eq!(get_route("/login", None).unwrap().unwrap(), UiRoute::Login);
    }

    #[test]
    fn leaves_the_registry_api_alone() {
        for p in [
            "/v2/",
            "/v2/ui/manifests/latest",
            "/healthz",
            "/metrics",
            "/uix",
        ] {
            assert!(get_route(p, None).is_none(), "{p}");
        }
    }

    #[test]
    fn refuses_unknown_files_bad_names_and_writes() {
        let err = |r: Option<Result<UiRoute>>| r.unwrap().unwrap_err();
        assert!(matches!(
            err(get_route("/ui/../index.db", None)),
            Error::NotFound(_)
        ));
        assert!(matches!(
            err(get_route("/ui/api/nothing", None)),
            Error::NotFound(_)
        ));
        assert!(matches!(
            err(get_route("/ui/api/tags", Some("repo=Not..Valid"))),
            Error::NameInvalid(_)
        ));
        assert!(matches!(
            err(get_route("/ui/api/tags", None)),
            Error::BadRequest(_)
        ));
        assert!(matches!(
            err(parse(&Method::Post, "/", None)),
            Error::MethodNotAllowed(_)
        ));
    }

    #[test]
    fn page_sizes_are_clamped() {
        let n = |q: &str| match get_route("/ui/api/repos", Some(q)).unwrap().unwrap() {
            UiRoute::Repos { n, .. } => n,
            other => panic!("{other:?}"),
        };
        assert_eq!(n(""), REPOS_PER_PAGE.0);
        assert_eq!(n("n=0"), 1);
        assert_eq!(n("n=100000"), REPOS_PER_PAGE.1);
        assert_eq!(n("n=junk"), REPOS_PER_PAGE.0);
    }

    #[test]
    fn only_the_login_url_is_open() {
        assert_eq!(UiRoute::Login.access(), Access::Open);
        for r in [UiRoute::Page, UiRoute::Asset("app.js"), UiRoute::Summary] {
            assert_eq!(r.access(), Access::Read);
        }
    }
}
