//! What `hoist setup` finds on a server before changing anything: who we are logged in as and
//! whether we may act as root, the operating system, and the state of Docker and the firewall.
//! One shell script gathers it in a single remote exec; its `key=value` lines are parsed here.

use std::collections::HashMap;

/// How the SSH user can act as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Logged in as root.
    Root,
    /// `sudo -n` works: sudo without a password.
    Sudo,
    /// sudo exists but asks for a password.
    SudoWithPassword,
    /// No sudo on the server.
    NoSudo,
}

impl Privilege {
    /// The prefix that runs a command as root, when there is one.
    pub fn prefix(self) -> Option<&'static str> {
        match self {
            Privilege::Root => Some(""),
            Privilege::Sudo => Some("sudo -n "),
            Privilege::SudoWithPassword | Privilege::NoSudo => None,
        }
    }
}

/// One server's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub user: String,
    pub privilege: Privilege,
    /// `ID` of /etc/os-release, e.g. `debian`, `ubuntu`.
    pub os_id: String,
    /// `ID_LIKE`, e.g. `debian` on Ubuntu.
    pub os_like: String,
    /// `PRETTY_NAME`, for messages.
    pub os_name: String,
    /// `VERSION_CODENAME`, e.g. `bookworm`.
    pub codename: String,
    pub apt: bool,
    /// dockerd is installed.
    pub docker_installed: bool,
    /// dockerd runs.
    pub docker_running: bool,
    /// The user is in the `docker` group (root needs no group).
    pub in_docker_group: bool,
    /// systemd is the init system.
    pub systemd: bool,
    pub ufw_installed: bool,
    /// `ufw status` says active (known only with root rights).
    pub ufw_active: bool,
    /// Ports ufw allows (`22/tcp`, ...).
    pub ufw_allowed: Vec<String>,
}

impl Facts {
    /// Debian, Ubuntu, or a derivative that says so.
    pub fn supported_os(&self) -> bool {
        let family = |id: &str| id == "debian" || id == "ubuntu";
        (family(&self.os_id) || self.os_like.split_whitespace().any(family)) && self.apt
    }

    /// What `hoist setup` reports it found, e.g. `Debian GNU/Linux 12 (bookworm), root, Docker
    /// running`.
    pub fn summary(&self) -> String {
        let who = match self.privilege {
            Privilege::Root => "root".to_string(),
            Privilege::Sudo => format!("{} with sudo", self.user),
            Privilege::SudoWithPassword => format!("{} (sudo asks for a password)", self.user),
            Privilege::NoSudo => format!("{} (no sudo)", self.user),
        };
        let docker = match (self.docker_installed, self.docker_running) {
            (false, _) => "no Docker",
            (true, false) => "Docker installed, not running",
            (true, true) => "Docker running",
        };
        format!("{}, {who}, {docker}", self.os_name)
    }
}

/// The script printing [`Facts`] as `key=value` lines. POSIX sh; reads only.
pub const SCRIPT: &str = r#"
# dockerd, ufw and usermod live in sbin, which a non-root user's PATH may lack.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
echo "user=$(id -un)"
if [ "$(id -u)" -eq 0 ]; then echo privilege=root; SUDO=""
elif ! command -v sudo >/dev/null 2>&1; then echo privilege=no-sudo; SUDO=none
elif sudo -n true 2>/dev/null; then echo privilege=sudo; SUDO="sudo -n"
else echo privilege=sudo-password; SUDO=none; fi
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "os_id=${ID:-unknown}"
echo "os_like=${ID_LIKE:-}"
echo "os_name=${PRETTY_NAME:-unknown system}"
echo "codename=${VERSION_CODENAME:-}"
yes_no() { if "$@" >/dev/null 2>&1; then echo yes; else echo no; fi; }
echo "apt=$(yes_no command -v apt-get)"
echo "docker_installed=$(yes_no command -v dockerd)"
if command -v pgrep >/dev/null 2>&1; then echo "docker_running=$(yes_no pgrep -x dockerd)"
else echo "docker_running=$(yes_no test -S /var/run/docker.sock)"; fi
echo "docker_group=$(id -nG | tr ' ' '\n' | grep -qx docker && echo yes || echo no)"
echo "systemd=$(yes_no test -d /run/systemd/system)"
echo "ufw_installed=$(yes_no command -v ufw)"
if [ "$SUDO" != none ] && command -v ufw >/dev/null 2>&1; then
  status=$($SUDO ufw status 2>/dev/null)
  case "$status" in *"Status: active"*) echo ufw_active=yes ;; *) echo ufw_active=no ;; esac
  echo "ufw_allowed=$(printf '%s\n' "$status" | awk '$2 == "ALLOW" && $1 !~ /\(v6\)/ { print $1 }' | tr '\n' ' ')"
fi
"#;

/// Parses the script's output; a missing line is an error naming it.
pub fn parse(output: &str) -> Result<Facts, String> {
    let values: HashMap<&str, &str> = output
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim(), value.trim()))
        .collect();
    let get = |key: &str| {
        values
            .get(key)
            .copied()
            .ok_or_else(|| format!("the server's answer has no `{key}` line"))
    };
    let yes = |key: &str| get(key).map(|value| value == "yes");
    let privilege = match get("privilege")? {
        "root" => Privilege::Root,
        "sudo" => Privilege::Sudo,
        "sudo-password" => Privilege::SudoWithPassword,
        "no-sudo" => Privilege::NoSudo,
        other => return Err(format!("unexpected privilege `{other}`")),
    };
    Ok(Facts {
        user: get("user")?.to_string(),
        privilege,
        os_id: get("os_id")?.to_string(),
        os_like: get("os_like")?.to_string(),
        os_name: get("os_name")?.trim_matches('"').to_string(),
        codename: get("codename")?.to_string(),
        apt: yes("apt")?,
        docker_installed: yes("docker_installed")?,
        docker_running: yes("docker_running")?,
        in_docker_group: yes("docker_group")?,
        systemd: yes("systemd")?,
        ufw_installed: yes("ufw_installed")?,
        ufw_active: values
            .get("ufw_active")
            .is_some_and(|value| *value == "yes"),
        ufw_allowed: values
            .get("ufw_allowed")
            .map(|list| list.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const FRESH_DEBIAN: &str = "user=root\nprivilege=root\nos_id=debian\nos_like=\n\
        os_name=Debian GNU/Linux 12 (bookworm)\ncodename=bookworm\napt=yes\n\
        docker_installed=no\ndocker_running=no\ndocker_group=no\nsystemd=no\nufw_installed=no\n";

    #[test]
    fn a_fresh_debian_box_parses() {
        let facts = parse(FRESH_DEBIAN).expect("parses");
        assert_eq!(facts.privilege, Privilege::Root);
        assert!(facts.supported_os());
        assert!(!facts.docker_installed && !facts.ufw_active);
        assert_eq!(
            facts.summary(),
            "Debian GNU/Linux 12 (bookworm), root, no Docker"
        );
    }

    #[test]
    fn ubuntu_with_sudo_and_ufw() {
        let output = "user=deploy\nprivilege=sudo\nos_id=ubuntu\nos_like=debian\n\
            os_name=Ubuntu 24.04 LTS\ncodename=noble\napt=yes\ndocker_installed=yes\n\
            docker_running=yes\ndocker_group=yes\nsystemd=yes\nufw_installed=yes\n\
            ufw_active=yes\nufw_allowed=22/tcp 80/tcp 443/tcp \n";
        let facts = parse(output).expect("parses");
        assert_eq!(facts.privilege, Privilege::Sudo);
        assert_eq!(facts.ufw_allowed, ["22/tcp", "80/tcp", "443/tcp"]);
        assert_eq!(
            facts.summary(),
            "Ubuntu 24.04 LTS, deploy with sudo, Docker running"
        );
    }

    #[test]
    fn other_systems_and_truncated_answers() {
        let alpine = FRESH_DEBIAN
            .replace("os_id=debian", "os_id=alpine")
            .replace("apt=yes", "apt=no");
        assert!(!parse(&alpine).expect("parses").supported_os());
        let mint = FRESH_DEBIAN
            .replace("os_id=debian", "os_id=linuxmint")
            .replace("os_like=", "os_like=ubuntu debian");
        assert!(parse(&mint).expect("parses").supported_os());
        let error = parse("user=root\n").unwrap_err();
        assert!(error.contains("privilege"), "{error}");
    }
}
