//! The app's own error pages (`error_pages_path`) on their way into hoist-proxy's volume: read
//! here, a directory per content there, named to the proxy at each deploy (container/proxy.rs).

use anyhow::{Context, Result};

use crate::config::Config;
use crate::docker;
use crate::naming::PROXY_STATE_DIR;
use crate::report::hinted;

/// The pages of `error_pages_path` for `service`, and the directory of the proxy's volume they
/// go to: one per content (`error-pages/<service>/<hash>`), so a page removed here is gone
/// there too and a deploy switches pages with its container. `None` without the key.
pub(super) fn for_service(
    config: &Config,
    service: &str,
) -> Result<Option<(String, Vec<docker::FileSpec>)>> {
    use std::hash::{Hash, Hasher};
    let Some(source) = &config.error_pages_path else {
        return Ok(None);
    };
    let mut pages = Vec::new();
    for status in hoist_proxy::error_pages::STATUSES {
        let path = source.join(format!("{status}.html"));
        match std::fs::read(&path) {
            Ok(page) => pages.push((status, page)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("Failed to read `{}`", path.display()));
            }
        }
    }
    if pages.is_empty() {
        let names: Vec<String> = hoist_proxy::error_pages::STATUSES
            .iter()
            .map(|status| format!("{status}.html"))
            .collect();
        return Err(hinted(
            format!(
                "`error_pages_path` ({}) holds no error page",
                crate::config::display_path(source)
            ),
            format!("name pages by their status: {}", names.join(", ")),
        ));
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    pages.hash(&mut hasher);
    let dir = format!(
        "{PROXY_STATE_DIR}/error-pages/{service}/{:016x}",
        hasher.finish()
    );
    let files = pages
        .into_iter()
        .map(|(status, page)| docker::FileSpec::new(format!("{dir}/{status}.html"), page, 0o644))
        .collect();
    Ok(Some((dir, files)))
}

#[cfg(test)]
mod tests {
    use super::super::proxy_args::deploy_args_with;
    use super::super::proxy_args::tests::{config_with, parse};
    use super::*;

    #[test]
    fn error_pages_go_to_a_directory_per_content_that_the_proxy_is_told() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("pages")).expect("mkdir");
        std::fs::write(dir.path().join("pages/503.html"), "down: {{ .Message }}").expect("page");
        std::fs::write(dir.path().join("pages/notes.txt"), "not a page").expect("file");
        let config = config_with(dir.path(), "");
        let config = Config {
            error_pages_path: Some(dir.path().join("pages")),
            ..config
        };
        let (target, files) = for_service(&config, "a-web").expect("read").expect("pages");
        assert!(
            target.starts_with("/var/lib/hoist-proxy/error-pages/a-web/"),
            "{target}"
        );
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, format!("{target}/503.html"));
        let args =
            deploy_args_with(&config, "a-web", "0123456789ab", Some(&target), None).expect("args");
        assert_eq!(parse(&args).error_pages, Some(target.clone().into()));
        // Another page: another directory.
        std::fs::write(dir.path().join("pages/502.html"), "broken").expect("page");
        let (other, _) = for_service(&config, "a-web").expect("read").expect("pages");
        assert_ne!(other, target);
        // None at all is refused.
        std::fs::remove_file(dir.path().join("pages/502.html")).expect("rm");
        std::fs::remove_file(dir.path().join("pages/503.html")).expect("rm");
        let err = for_service(&config, "a-web").expect_err("no page");
        assert!(
            format!("{err:#}").contains("holds no error page"),
            "{err:#}"
        );
    }
}
