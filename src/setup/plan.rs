//! What `hoist setup` changes on one server, decided from its [`Facts`] and `[setup]` before
//! anything changes: install Docker, start it, let a non-root user use it, open only SSH, 80 and
//! 443 in ufw. Each step knows the shell commands that do it (run as root: directly, or through
//! `sudo -n`). A server that needs changes it cannot get (an unsupported system, no root rights)
//! is refused here, so setup fails before touching any server.

use crate::config::{DockerPackages, SetupConfig};

use super::facts::{Facts, Privilege};

/// One change to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    InstallDocker(DockerPackages),
    StartDocker {
        systemd: bool,
    },
    /// Add the SSH user to the `docker` group (the next login sees it).
    JoinDockerGroup(String),
    /// Install ufw if needed, allow the SSH port, 80 and 443, enable it.
    Firewall {
        install: bool,
        ssh_port: u16,
    },
}

impl Step {
    /// What the step does, for the report: `install Docker (docker.io)`.
    pub fn describe(&self) -> String {
        match self {
            Step::InstallDocker(DockerPackages::Distribution) => {
                "install Docker (docker.io)".to_string()
            }
            Step::InstallDocker(DockerPackages::DockerCe) => {
                "install Docker (docker-ce, from Docker's repository)".to_string()
            }
            Step::StartDocker { .. } => "start Docker".to_string(),
            Step::JoinDockerGroup(user) => format!("add `{user}` to the docker group"),
            Step::Firewall { ssh_port, .. } => {
                format!("enable ufw with only {ssh_port}/tcp (SSH), 80/tcp and 443/tcp open")
            }
        }
    }

    /// Needs the package mirror.
    pub fn installs(&self) -> bool {
        matches!(
            self,
            Step::InstallDocker(_) | Step::Firewall { install: true, .. }
        )
    }

    /// The shell commands, each prefixed with `sudo` (empty for root).
    pub fn script(&self, sudo: &str, codename: &str, os_id: &str) -> String {
        let apt = format!("{sudo}env DEBIAN_FRONTEND=noninteractive apt-get");
        match self {
            Step::InstallDocker(DockerPackages::Distribution) => format!(
                "set -e\n{apt} install -y -q --no-install-recommends docker.io ca-certificates\n"
            ),
            Step::InstallDocker(DockerPackages::DockerCe) => format!(
                "set -e\n\
                 {apt} install -y -q --no-install-recommends ca-certificates curl\n\
                 {sudo}install -m 0755 -d /etc/apt/keyrings\n\
                 {sudo}curl -fsSL https://download.docker.com/linux/{os_id}/gpg -o /etc/apt/keyrings/docker.asc\n\
                 {sudo}chmod a+r /etc/apt/keyrings/docker.asc\n\
                 echo \"deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] \
                 https://download.docker.com/linux/{os_id} {codename} stable\" \
                 | {sudo}tee /etc/apt/sources.list.d/docker.list >/dev/null\n\
                 {apt} update -q\n\
                 {apt} install -y -q docker-ce docker-ce-cli containerd.io\n"
            ),
            Step::StartDocker { systemd: true } => {
                format!("set -e\n{sudo}systemctl enable --now docker\n{WAIT_FOR_DOCKER}")
            }
            // Without systemd: the package's init script, or dockerd itself where the script
            // can't run (containers refuse its ulimit calls).
            Step::StartDocker { systemd: false } => format!(
                "if ! {sudo}service docker start; then\n  \
                 echo 'service docker start failed; starting dockerd directly' >&2\n  \
                 {sudo}sh -c 'nohup setsid dockerd >>/var/log/docker.log 2>&1 </dev/null &'\n\
                 fi\n{WAIT_FOR_DOCKER}"
            ),
            Step::JoinDockerGroup(user) => format!(
                "set -e\n{sudo}usermod -aG docker {}\n",
                crate::ssh::quote(user).unwrap_or_else(|_| "\"$(id -un)\"".to_string())
            ),
            Step::Firewall { install, ssh_port } => {
                let mut script = String::from("set -e\n");
                if *install {
                    script.push_str(&format!("{apt} install -y -q ufw\n"));
                }
                for port in [ssh_port.to_string(), "80".into(), "443".into()] {
                    script.push_str(&format!("{sudo}ufw allow {port}/tcp\n"));
                }
                script.push_str(&format!("{sudo}ufw --force enable\n"));
                script
            }
        }
    }
}

/// Waits up to 30 s for the Docker socket.
const WAIT_FOR_DOCKER: &str = "i=0\nwhile [ ! -S /var/run/docker.sock ]; do\n  i=$((i+1))\n  \
    if [ $i -gt 150 ]; then echo 'Docker did not create /var/run/docker.sock within 30s' >&2; exit 1; fi\n  \
    sleep 0.2\ndone\n";

/// Why a server can't be set up; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub hint: String,
}

/// The steps `facts` calls for, in order, or why they can't be taken.
pub fn plan(facts: &Facts, setup: &SetupConfig, ssh_port: u16) -> Result<Vec<Step>, Refusal> {
    let mut steps = Vec::new();
    if !facts.docker_installed {
        steps.push(Step::InstallDocker(setup.docker));
    }
    if !facts.docker_running {
        steps.push(Step::StartDocker {
            systemd: facts.systemd,
        });
    }
    if facts.privilege != Privilege::Root && !facts.in_docker_group {
        steps.push(Step::JoinDockerGroup(facts.user.clone()));
    }
    if setup.firewall {
        let open = ["22/tcp".to_string(), "80/tcp".into(), "443/tcp".into()]
            .map(|port| port.replace("22/", &format!("{ssh_port}/")));
        let allowed = open.iter().all(|port| facts.ufw_allowed.contains(port));
        if !facts.ufw_active || !allowed {
            steps.push(Step::Firewall {
                install: !facts.ufw_installed,
                ssh_port,
            });
        }
    }
    if steps.is_empty() {
        return Ok(steps);
    }
    let wanted: Vec<String> = steps.iter().map(Step::describe).collect();
    if !facts.supported_os() {
        return Err(Refusal {
            message: format!(
                "{} is not supported: hoist setup installs Docker on Debian and Ubuntu (with \
                 apt), and this server needs: {}",
                facts.os_name,
                wanted.join(", ")
            ),
            hint: "install and start Docker there yourself (and add the SSH user to the docker \
                   group), then run `hoist setup` again: it only checks what is already right"
                .to_string(),
        });
    }
    if facts.privilege.prefix().is_none() {
        let why = match facts.privilege {
            Privilege::SudoWithPassword => "sudo asks it for a password",
            _ => "it has no sudo",
        };
        return Err(Refusal {
            message: format!(
                "`{}` can't act as root ({why}), and this server needs: {}",
                facts.user,
                wanted.join(", ")
            ),
            hint: format!(
                "log in as root (`user = \"root\"` under `[ssh]`), or give `{}` sudo without a \
                 password (`{} ALL=(ALL) NOPASSWD:ALL` in /etc/sudoers.d/)",
                facts.user, facts.user
            ),
        });
    }
    if setup.docker == DockerPackages::DockerCe
        && !facts.docker_installed
        && facts.codename.is_empty()
    {
        return Err(Refusal {
            message: format!(
                "{} names no release codename (VERSION_CODENAME), which Docker's repository needs",
                facts.os_name
            ),
            hint: "use `docker = \"docker.io\"` under `[setup]` (the distribution's package)"
                .to_string(),
        });
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::facts::parse;

    fn facts(changes: &[(&str, &str)]) -> Facts {
        let mut text = "user=root\nprivilege=root\nos_id=debian\nos_like=\n\
            os_name=Debian GNU/Linux 12 (bookworm)\ncodename=bookworm\napt=yes\n\
            docker_installed=no\ndocker_running=no\ndocker_group=no\nsystemd=no\nufw_installed=no\n"
            .to_string();
        for (from, to) in changes {
            text = text.replace(from, to);
        }
        parse(&text).expect("parses")
    }

    #[test]
    fn a_fresh_box_gets_docker_installed_and_started() {
        let steps = plan(&facts(&[]), &SetupConfig::default(), 22).expect("plan");
        assert_eq!(
            steps,
            [
                Step::InstallDocker(DockerPackages::Distribution),
                Step::StartDocker { systemd: false }
            ]
        );
        let script = steps[0].script("", "bookworm", "debian");
        assert!(script.contains("apt-get install -y -q --no-install-recommends docker.io"));
        assert!(steps[1].script("", "", "").contains("service docker start"));
    }

    #[test]
    fn a_ready_box_needs_nothing_whatever_it_runs() {
        let ready = facts(&[
            ("docker_installed=no", "docker_installed=yes"),
            ("docker_running=no", "docker_running=yes"),
            ("os_id=debian", "os_id=alpine"),
            ("privilege=root", "privilege=no-sudo"),
            ("user=root", "user=deploy"),
            ("docker_group=no", "docker_group=yes"),
        ]);
        assert_eq!(plan(&ready, &SetupConfig::default(), 22), Ok(vec![]));
    }

    #[test]
    fn a_sudo_user_joins_the_docker_group_through_sudo() {
        let user = facts(&[
            ("privilege=root", "privilege=sudo"),
            ("user=root", "user=deploy"),
            ("systemd=no", "systemd=yes"),
        ]);
        let steps = plan(&user, &SetupConfig::default(), 22).expect("plan");
        assert_eq!(steps[2], Step::JoinDockerGroup("deploy".to_string()));
        let sudo = user.privilege.prefix().expect("sudo");
        assert_eq!(
            steps[2].script(sudo, "", ""),
            "set -e\nsudo -n usermod -aG docker deploy\n"
        );
        assert!(
            steps[1]
                .script(sudo, "", "")
                .contains("sudo -n systemctl enable --now docker")
        );
    }

    #[test]
    fn no_root_rights_or_another_system_is_refused_with_what_was_needed() {
        let no_sudo = facts(&[
            ("privilege=root", "privilege=no-sudo"),
            ("user=root", "user=deploy"),
        ]);
        let refusal = plan(&no_sudo, &SetupConfig::default(), 22).unwrap_err();
        assert!(
            refusal
                .message
                .contains("`deploy` can't act as root (it has no sudo)"),
            "{refusal:?}"
        );
        assert!(refusal.message.contains("install Docker (docker.io)"));
        assert!(refusal.hint.contains("NOPASSWD"));

        let password = facts(&[
            ("privilege=root", "privilege=sudo-password"),
            ("user=root", "user=deploy"),
        ]);
        let refusal = plan(&password, &SetupConfig::default(), 22).unwrap_err();
        assert!(refusal.message.contains("sudo asks it for a password"));

        let fedora = facts(&[("os_id=debian", "os_id=fedora"), ("apt=yes", "apt=no")]);
        let refusal = plan(&fedora, &SetupConfig::default(), 22).unwrap_err();
        assert!(refusal.message.contains("is not supported"), "{refusal:?}");
    }

    #[test]
    fn the_firewall_is_enabled_once_with_the_ssh_port() {
        let setup = SetupConfig {
            firewall: true,
            ..SetupConfig::default()
        };
        let ready = facts(&[
            ("docker_installed=no", "docker_installed=yes"),
            ("docker_running=no", "docker_running=yes"),
        ]);
        let steps = plan(&ready, &setup, 2222).expect("plan");
        assert_eq!(
            steps,
            [Step::Firewall {
                install: true,
                ssh_port: 2222
            }]
        );
        let script = steps[0].script("", "", "");
        for line in [
            "apt-get install -y -q ufw",
            "ufw allow 2222/tcp",
            "ufw allow 80/tcp",
            "ufw allow 443/tcp",
            "ufw --force enable",
        ] {
            assert!(script.contains(line), "{line} missing in {script}");
        }
        let mut done = ready.clone();
        done.ufw_installed = true;
        done.ufw_active = true;
        done.ufw_allowed = vec!["2222/tcp".into(), "80/tcp".into(), "443/tcp".into()];
        assert_eq!(plan(&done, &setup, 2222), Ok(vec![]));
    }
}
