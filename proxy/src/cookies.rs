//! Reading cookies from request headers and rewriting `Set-Cookie` paths: the two things the
//! proxy does with cookies (writer affinity, rollout split, `--scope-cookie-paths`).

use http::HeaderMap;
use http::header::COOKIE;

/// The value of cookie `name` in the request's `Cookie` headers, if present.
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"'))
        })
}

/// Rewrites the `Path` attribute of a `Set-Cookie` value to sit under `prefix`, for cookies with
/// no `Domain` or a `Domain` equal to `host`. Returns `None` when nothing changes.
pub fn scope_path(set_cookie: &str, prefix: &str, host: &str) -> Option<String> {
    let mut parts: Vec<String> = set_cookie
        .split(';')
        .map(|part| part.trim().to_owned())
        .collect();
    let domain_ok = parts
        .iter()
        .skip(1)
        .all(|attribute| match attribute.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case("domain") => {
                value.trim_start_matches('.').eq_ignore_ascii_case(host)
            }
            _ => true,
        });
    if !domain_ok {
        return None;
    }
    let scoped = |path: &str| {
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            prefix.to_owned()
        } else {
            format!("{prefix}/{path}")
        }
    };
    let mut found = false;
    for attribute in parts.iter_mut().skip(1) {
        if let Some((key, value)) = attribute.split_once('=')
            && key.eq_ignore_ascii_case("path")
        {
            *attribute = format!("Path={}", scoped(value));
            found = true;
        }
    }
    if !found {
        parts.push(format!("Path={prefix}"));
    }
    Some(parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn finds_a_cookie_among_several() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; kamal-rollout=user-7"),
        );
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(find(&headers, "kamal-rollout"), Some("user-7"));
        assert_eq!(find(&headers, "b"), Some("2"));
        assert_eq!(find(&headers, "c"), None);
    }

    #[test]
    fn scopes_cookie_paths_under_the_prefix() {
        assert_eq!(
            scope_path("session=x; Path=/; HttpOnly", "/app", "a.com").unwrap(),
            "session=x; Path=/app; HttpOnly"
        );
        assert_eq!(
            scope_path("s=x", "/app", "a.com").unwrap(),
            "s=x; Path=/app"
        );
        assert_eq!(
            scope_path("s=x; Path=/admin", "/app", "a.com").unwrap(),
            "s=x; Path=/app/admin"
        );
        assert!(scope_path("s=x; Domain=other.com", "/app", "a.com").is_none());
    }
}
