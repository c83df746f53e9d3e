//! What hoist-proxy does to stand in for kamal-proxy under Kamal: the program name Kamal runs
//! (`kamal-proxy`, a second name for this binary in the image), the kamal-proxy version whose
//! command line hoist-proxy speaks, and the image tag that carries it past Kamal's minimum-version
//! check. How the name changes where state is kept lives in `paths.rs`.

use std::ffi::OsStr;
use std::path::Path;

/// The name Kamal runs the proxy by: `docker exec kamal-proxy kamal-proxy deploy ...`.
pub const PROGRAM_NAME: &str = "kamal-proxy";

/// The kamal-proxy release whose command line (commands, flags, exit codes, messages) hoist-proxy
/// implements; Kamal 2.12 requires at least this one.
pub const KAMAL_PROXY_VERSION: &str = "0.9.2";

/// Whether this process was started as `kamal-proxy` (its `argv[0]`, path or not).
pub fn invoked_as_kamal_proxy(argv0: Option<&OsStr>) -> bool {
    argv0
        .and_then(|name| Path::new(name).file_name())
        .is_some_and(|name| name == PROGRAM_NAME)
}

/// The image tag Kamal users put in `proxy.run.version` for hoist-proxy `version`:
/// `v<kamal-proxy version>.<hoist-proxy version>`, e.g. `v0.9.2.0.1.0`.
///
/// Kamal compares the tag (without its `v`) with its minimum as a `Gem::Version`: numeric
/// segments one by one, where any letter or `-` makes a pre-release that sorts before the
/// release. Starting with the kamal-proxy version hoist-proxy speaks makes the tag pass exactly
/// when Kamal asks for no newer kamal-proxy than that; a pre-release of hoist-proxy gets no such
/// tag, because Kamal would call it older than its minimum.
pub fn image_tag(hoist_proxy_version: &str) -> Option<String> {
    let numeric = !hoist_proxy_version.is_empty()
        && hoist_proxy_version
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()));
    numeric.then(|| format!("v{KAMAL_PROXY_VERSION}.{hoist_proxy_version}"))
}

/// Whether Kamal's minimum-version check lets `tag` through:
/// `Gem::Version.new(tag.delete_prefix("v")) >= Gem::Version.new(minimum.delete_prefix("v"))`,
/// restated for numeric versions (segment by segment, a missing segment counting as 0). A tag
/// with anything but digits and dots is a pre-release or an error to Kamal, and fails here.
pub fn kamal_accepts(tag: &str, minimum: &str) -> bool {
    let segments = |text: &str| -> Option<Vec<u64>> {
        let text = text.strip_prefix('v').unwrap_or(text);
        text.split('.').map(|part| part.parse().ok()).collect()
    };
    let (Some(tag), Some(minimum)) = (segments(tag), segments(minimum)) else {
        return false;
    };
    for index in 0..tag.len().max(minimum.len()) {
        let (have, want) = (
            tag.get(index).copied().unwrap_or(0),
            minimum.get(index).copied().unwrap_or(0),
        );
        if have != want {
            return have > want;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_its_kamal_name_with_or_without_a_path() {
        for name in ["kamal-proxy", "/usr/local/bin/kamal-proxy", "./kamal-proxy"] {
            assert!(invoked_as_kamal_proxy(Some(OsStr::new(name))), "{name}");
        }
        for name in [
            "hoist-proxy",
            "/usr/local/bin/hoist-proxy",
            "kamal-proxy-old",
            "",
        ] {
            assert!(!invoked_as_kamal_proxy(Some(OsStr::new(name))), "{name}");
        }
        assert!(!invoked_as_kamal_proxy(None));
    }

    #[test]
    fn tags_releases_only() {
        assert_eq!(image_tag("0.1.0").as_deref(), Some("v0.9.2.0.1.0"));
        assert_eq!(image_tag("1.12.3").as_deref(), Some("v0.9.2.1.12.3"));
        for version in ["1.2.3-rc.1", "1.2.3.beta", "", "1..2"] {
            assert_eq!(image_tag(version), None, "{version}");
        }
    }

    #[test]
    fn the_tag_passes_kamals_minimum_and_fails_a_newer_one() {
        let tag = image_tag("0.1.0").expect("a release");
        assert!(kamal_accepts(&tag, "v0.9.2"), "Kamal 2.12 accepts {tag}");
        assert!(
            !kamal_accepts(&tag, "v0.9.3"),
            "a Kamal wanting kamal-proxy 0.9.3 refuses {tag}"
        );
        assert!(
            !kamal_accepts("v0.1.0", "v0.9.2"),
            "the plain version is refused"
        );
        assert!(kamal_accepts("v0.9.2", "v0.9.2"));
        assert!(kamal_accepts("v0.10.0", "v0.9.2"));
        assert!(
            !kamal_accepts("v0.9.2-rc.1", "v0.9.2"),
            "a pre-release is older"
        );
        assert!(!kamal_accepts("", "v0.9.2"));
    }
}
