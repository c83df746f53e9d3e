//! Where hoist-proxy keeps its routing state, certificates and control socket, resolved from
//! flags, environment and defaults. Resolution is a pure function of its inputs: the caller reads
//! the process environment once ([`PathEnvironment::from_process`]) and tests pass their own.
//! What goes into those files belongs to the state and control modules.
//!
//! Started as `kamal-proxy` (the name Kamal runs), the default state directory is kamal-proxy's,
//! `~/.config/kamal-proxy`, which is where Kamal mounts its `kamal-proxy-config` volume.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variable naming the control socket; `--socket` wins over it.
pub const SOCKET_ENV: &str = "HOIST_PROXY_SOCKET";

/// Environment variable naming the state directory; `--state-dir` wins over it.
pub const STATE_DIR_ENV: &str = "HOIST_PROXY_STATE_DIR";

/// File name of the control socket inside the state directory.
pub const SOCKET_FILE_NAME: &str = "hoist-proxy.sock";

/// File name of the routing state inside the state directory.
pub const STATE_FILE_NAME: &str = "hoist-proxy.state";

/// Directory of spilled request and response bodies inside the state directory.
pub const BUFFER_DIR_NAME: &str = "buffers";

/// Directory of ACME accounts and certificates inside the state directory.
pub const CERTIFICATE_DIR_NAME: &str = "certs";

/// The state directory when `HOME` is unset, as for a system service.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/hoist-proxy";

/// The state directory below `$HOME`, like kamal-proxy's `~/.config/kamal-proxy`.
pub const HOME_STATE_DIR: &str = ".config/hoist-proxy";

/// The state directory below `$HOME` when started as `kamal-proxy`: kamal-proxy's own.
pub const KAMAL_HOME_STATE_DIR: &str = ".config/kamal-proxy";

/// The environment variables path resolution reads, captured in one place.
///
/// Empty values count as unset, as they do for Go's `os.Getenv(...) != ""` checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathEnvironment {
    /// `$HOIST_PROXY_SOCKET`.
    pub socket: Option<PathBuf>,
    /// `$HOIST_PROXY_STATE_DIR`.
    pub state_dir: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// Started as `kamal-proxy`, so kamal-proxy's directory is the default.
    pub kamal: bool,
}

impl PathEnvironment {
    /// Builds an environment from raw values, as `std::env::var_os` returns them.
    pub fn new(
        socket: Option<OsString>,
        state_dir: Option<OsString>,
        home: Option<OsString>,
    ) -> Self {
        Self {
            socket: socket.map(PathBuf::from),
            state_dir: state_dir.map(PathBuf::from),
            home: home.map(PathBuf::from),
            kamal: false,
        }
    }

    /// Reads `HOIST_PROXY_SOCKET`, `HOIST_PROXY_STATE_DIR`, `HOME` and the program name from
    /// this process.
    pub fn from_process() -> Self {
        Self {
            kamal: crate::kamal::invoked_as_kamal_proxy(std::env::args_os().next().as_deref()),
            ..Self::new(
                std::env::var_os(SOCKET_ENV),
                std::env::var_os(STATE_DIR_ENV),
                std::env::var_os("HOME"),
            )
        }
    }
}

/// The resolved locations of everything hoist-proxy keeps on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPaths {
    /// Directory holding the state file and the certificate cache.
    pub state_dir: PathBuf,
    /// Unix socket the running proxy listens on and every other command connects to.
    pub socket: PathBuf,
}

impl ProxyPaths {
    /// Resolves the state directory and the socket.
    ///
    /// - State directory: `--state-dir`, else `$HOIST_PROXY_STATE_DIR`, else
    ///   `$HOME/.config/hoist-proxy` (`$HOME/.config/kamal-proxy` when started as `kamal-proxy`),
    ///   else `/var/lib/hoist-proxy`.
    /// - Socket: `--socket`, else `$HOIST_PROXY_SOCKET`, else `hoist-proxy.sock` in the state
    ///   directory.
    pub fn resolve(
        socket_flag: Option<&Path>,
        state_dir_flag: Option<&Path>,
        environment: &PathEnvironment,
    ) -> Self {
        let state_dir = first_non_empty([state_dir_flag, environment.state_dir.as_deref()])
            .map(Path::to_path_buf)
            .or_else(|| {
                let below_home = if environment.kamal {
                    KAMAL_HOME_STATE_DIR
                } else {
                    HOME_STATE_DIR
                };
                non_empty(environment.home.as_deref()).map(|home| home.join(below_home))
            })
            .unwrap_or_else(|| PathBuf::from(SYSTEM_STATE_DIR));
        let socket = first_non_empty([socket_flag, environment.socket.as_deref()])
            .map(Path::to_path_buf)
            .unwrap_or_else(|| state_dir.join(SOCKET_FILE_NAME));
        Self { state_dir, socket }
    }

    /// The routing state file, rewritten after every change and read at start-up.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join(STATE_FILE_NAME)
    }

    /// The default ACME cache: accounts and certificates.
    pub fn certificate_dir(&self) -> PathBuf {
        self.state_dir.join(CERTIFICATE_DIR_NAME)
    }
}

/// The first candidate that is set and not empty.
fn first_non_empty<const N: usize>(candidates: [Option<&Path>; N]) -> Option<&Path> {
    candidates.into_iter().find_map(non_empty)
}

fn non_empty(path: Option<&Path>) -> Option<&Path> {
    path.filter(|path| !path.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(
        socket: Option<&str>,
        state_dir: Option<&str>,
        home: Option<&str>,
    ) -> PathEnvironment {
        PathEnvironment::new(
            socket.map(Into::into),
            state_dir.map(Into::into),
            home.map(Into::into),
        )
    }

    #[test]
    fn defaults_to_the_users_config_directory() {
        let paths = ProxyPaths::resolve(None, None, &environment(None, None, Some("/home/app")));
        assert_eq!(paths.state_dir, Path::new("/home/app/.config/hoist-proxy"));
        assert_eq!(
            paths.socket,
            Path::new("/home/app/.config/hoist-proxy/hoist-proxy.sock")
        );
        assert_eq!(
            paths.state_file(),
            Path::new("/home/app/.config/hoist-proxy/hoist-proxy.state")
        );
        assert_eq!(
            paths.certificate_dir(),
            Path::new("/home/app/.config/hoist-proxy/certs")
        );
    }

    #[test]
    fn falls_back_to_var_lib_without_home() {
        for home in [None, Some("")] {
            let paths = ProxyPaths::resolve(None, None, &environment(None, None, home));
            assert_eq!(paths.state_dir, Path::new("/var/lib/hoist-proxy"));
            assert_eq!(
                paths.socket,
                Path::new("/var/lib/hoist-proxy/hoist-proxy.sock")
            );
        }
    }

    #[test]
    fn state_dir_from_environment_beats_home() {
        let paths = ProxyPaths::resolve(
            None,
            None,
            &environment(None, Some("/srv/proxy"), Some("/home/app")),
        );
        assert_eq!(paths.state_dir, Path::new("/srv/proxy"));
        assert_eq!(paths.socket, Path::new("/srv/proxy/hoist-proxy.sock"));
    }

    #[test]
    fn state_dir_flag_beats_environment() {
        let paths = ProxyPaths::resolve(
            None,
            Some(Path::new("/flag/state")),
            &environment(None, Some("/env/state"), Some("/home/app")),
        );
        assert_eq!(paths.state_dir, Path::new("/flag/state"));
        assert_eq!(paths.socket, Path::new("/flag/state/hoist-proxy.sock"));
    }

    #[test]
    fn socket_from_environment_beats_state_dir() {
        let paths = ProxyPaths::resolve(
            None,
            Some(Path::new("/flag/state")),
            &environment(Some("/run/proxy.sock"), None, Some("/home/app")),
        );
        assert_eq!(paths.socket, Path::new("/run/proxy.sock"));
        assert_eq!(paths.state_dir, Path::new("/flag/state"));
    }

    #[test]
    fn socket_flag_beats_environment() {
        let paths = ProxyPaths::resolve(
            Some(Path::new("/flag.sock")),
            None,
            &environment(Some("/env.sock"), None, Some("/home/app")),
        );
        assert_eq!(paths.socket, Path::new("/flag.sock"));
        assert_eq!(paths.state_dir, Path::new("/home/app/.config/hoist-proxy"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let paths = ProxyPaths::resolve(
            Some(Path::new("")),
            Some(Path::new("")),
            &environment(Some(""), Some(""), Some("/home/app")),
        );
        assert_eq!(paths.state_dir, Path::new("/home/app/.config/hoist-proxy"));
        assert_eq!(
            paths.socket,
            Path::new("/home/app/.config/hoist-proxy/hoist-proxy.sock")
        );
    }

    #[test]
    fn started_as_kamal_proxy_defaults_to_kamal_proxys_directory() {
        let kamal = |state_dir: Option<&str>| PathEnvironment {
            kamal: true,
            ..environment(None, state_dir, Some("/home/kamal-proxy"))
        };
        let paths = ProxyPaths::resolve(None, None, &kamal(None));
        assert_eq!(
            paths.state_dir,
            Path::new("/home/kamal-proxy/.config/kamal-proxy")
        );
        assert_eq!(
            paths.state_file(),
            Path::new("/home/kamal-proxy/.config/kamal-proxy/hoist-proxy.state"),
            "kamal-proxy's own kamal-proxy.state is left alone"
        );
        let paths = ProxyPaths::resolve(None, None, &kamal(Some("/srv/proxy")));
        assert_eq!(
            paths.state_dir,
            Path::new("/srv/proxy"),
            "the environment still wins"
        );
    }
}
