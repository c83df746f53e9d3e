//! `[deploy] release_command` (migrations and the like): run once per deploy on the primary
//! host, in a one-off container of the new version with the primary role's environment
//! (secrets included), after every host has pulled the image and before any switch. Its output
//! is streamed, prefixed with the host; a failure stops the deploy with nothing switched.

use anyhow::{Result, anyhow};

use super::release::Release;
use super::short;
use crate::container::oneoff;
use crate::docker::{self, ExecStream};
use crate::fleet;
use crate::printer::LinePrefixer;
use crate::remote::Server;
use crate::report::hinted;

impl Release<'_> {
    /// Run `command` on the primary host (or, if it is not among `servers`, the first host of
    /// the release).
    pub(super) async fn run_release_command(
        &self,
        servers: &[&Server],
        command: &[String],
    ) -> Result<()> {
        let role = &self.config.primary_role;
        let primary = fleet::primary_host(self.config);
        let server = servers
            .iter()
            .find(|server| Some(&server.host) == primary.as_ref())
            .or_else(|| servers.first())
            .ok_or_else(|| anyhow!("no host to run the release command on"))?;
        let env = self.prepared.env_for(role, &server.host);
        let shown = command.join(" ");
        self.printer.status(
            "Release",
            format!(
                "running `{shown}` on {} ({role}, {})",
                server.host,
                short(self.version)
            ),
        );
        let prefix = Some(format!("[{} release] ", server.host));
        let mut lines = LinePrefixer::new(prefix);
        let oneoff = oneoff::OneOff {
            config: self.config,
            role,
            version: self.version,
            host: &server.host,
            env: &env,
            command,
        };
        let code = oneoff::run(
            &server.docker,
            oneoff,
            // All to stderr: stdout is for `--json`.
            |_, data| docker::write_output(ExecStream::Stderr, &lines.push(data)),
        )
        .await;
        docker::write_output(ExecStream::Stderr, &lines.finish());
        let code = code?;
        if code != 0 {
            return Err(hinted(
                format!(
                    "The release command `{shown}` exited with status {code} on `{}`",
                    server.host
                ),
                "its output is above; fix it and deploy again",
            ));
        }
        self.printer.status(
            "Released",
            format!("`{shown}` succeeded on {}", server.host),
        );
        Ok(())
    }
}
