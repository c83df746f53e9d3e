//! Hooks: executables in `hooks_path` named after a moment of a command (`pre-deploy`, …), run
//! on this machine with `HOIST_*` variables describing the command. A hook runs only if an
//! executable file with exactly that name exists; a pre-hook that fails stops the command before
//! it changes anything. Hooks that Kamal gives secrets to (pre-connect, pre-deploy, post-deploy)
//! get the secrets the configuration names, in their environment only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::printer::Printer;
use crate::report::hinted;

/// The moments hoist runs a hook at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PreConnect,
    PreBuild,
    PreDeploy,
    PreAppBoot,
    PostAppBoot,
    PostDeploy,
    DockerSetup,
    PreProxyReboot,
    PostProxyReboot,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::PreConnect => "pre-connect",
            Hook::PreBuild => "pre-build",
            Hook::PreDeploy => "pre-deploy",
            Hook::PreAppBoot => "pre-app-boot",
            Hook::PostAppBoot => "post-app-boot",
            Hook::PostDeploy => "post-deploy",
            Hook::DockerSetup => "docker-setup",
            Hook::PreProxyReboot => "pre-proxy-reboot",
            Hook::PostProxyReboot => "post-proxy-reboot",
        }
    }

    fn gets_secrets(self) -> bool {
        matches!(self, Hook::PreConnect | Hook::PreDeploy | Hook::PostDeploy)
    }

    fn is_post(self) -> bool {
        matches!(
            self,
            Hook::PostAppBoot | Hook::PostDeploy | Hook::PostProxyReboot
        )
    }
}

/// Runs the hooks of one command with its variables.
pub struct Hooks {
    dir: PathBuf,
    printer: Printer,
    /// `HOIST_SERVICE`, `HOIST_VERSION`, … (no secrets).
    vars: Vec<(String, String)>,
    /// Secret values, for the hooks that get them.
    secrets: Vec<(String, String)>,
    started: Instant,
    /// `-H`/`--skip-hooks`: none runs.
    skip: bool,
}

impl Hooks {
    /// Hooks in `dir` with `vars`; `HOIST_RUNTIME` counts from `started`, when the command began.
    pub fn new(
        dir: &Path,
        printer: Printer,
        vars: Vec<(String, String)>,
        started: Instant,
    ) -> Self {
        Self {
            dir: dir.to_path_buf(),
            printer,
            vars,
            secrets: Vec::new(),
            started,
            skip: false,
        }
    }

    /// The hooks of `config` (`hooks_path`), none when it was loaded with `-H`/`--skip-hooks`.
    pub fn for_config(
        config: &crate::config::Config,
        printer: Printer,
        vars: Vec<(String, String)>,
        started: Instant,
    ) -> Self {
        Self {
            skip: config.skip_hooks,
            ..Self::new(&config.hooks_path, printer, vars, started)
        }
    }

    /// Set (or replace) one variable, e.g. `HOIST_VERSION` once a rollback has found it.
    pub fn set(&mut self, name: &str, value: &str) {
        self.vars.retain(|(key, _)| key != name);
        self.vars.push((name.to_string(), value.to_string()));
    }

    /// Secret values handed to pre-connect, pre-deploy and post-deploy.
    pub fn with_secrets(mut self, secrets: Vec<(String, String)>) -> Self {
        self.secrets = secrets;
        self
    }

    /// Whether `hook` exists (executable or not: [`Self::run`] warns about the latter).
    pub fn exists(&self, hook: Hook) -> bool {
        !self.skip && self.dir.join(hook.name()).is_file()
    }

    /// Run `hook` if it exists, with `HOIST_HOSTS` set to `hosts`. Its output is shown prefixed
    /// with its name; a non-zero exit is an error naming the hook.
    pub fn run(&self, hook: Hook, hosts: &[String]) -> Result<()> {
        let path = self.dir.join(hook.name());
        let Ok(metadata) = std::fs::metadata(&path) else {
            return Ok(());
        };
        if self.skip {
            self.printer
                .detail(format!("hook {} skipped (--skip-hooks)", hook.name()));
            return Ok(());
        }
        if !metadata.is_file() || metadata.permissions().mode() & 0o111 == 0 {
            self.printer.warn(format!(
                "`{}` is not an executable file, so it does not run as a hook (chmod +x it)",
                path.display()
            ));
            return Ok(());
        }
        self.printer
            .status("Running", format!("hook {}", hook.name()));
        let mut command = Command::new(&path);
        command
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .env("HOIST_HOSTS", hosts.join(","))
            .env("HOIST_HOOK", hook.name())
            .stdin(Stdio::null());
        if hook.is_post() {
            command.env(
                "HOIST_RUNTIME",
                self.started.elapsed().as_secs().to_string(),
            );
        }
        if hook.gets_secrets() {
            command.envs(self.secrets.iter().map(|(k, v)| (k, v)));
        }
        let output = command
            .output()
            .with_context(|| format!("Failed to run hook `{}`", path.display()))?;
        let text = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
        for line in String::from_utf8_lossy(&text).lines() {
            self.printer.status(hook.name(), line);
        }
        if !output.status.success() {
            return Err(hinted(
                format!("Hook `{}` failed ({})", hook.name(), output.status),
                format!(
                    "its output is above; fix it, or move `{}` aside to skip it",
                    path.display()
                ),
            ));
        }
        Ok(())
    }
}
