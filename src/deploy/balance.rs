//! The load balancer in a release: its hoist-proxy booted with the web hosts' proxies (a
//! failure there stops the release with nothing switched), and once every web host runs the
//! new version, its target set brought in step with the web hosts in deploy.toml (a host added
//! joins the rotation, a host removed is drained out of it; drained hosts stay out).

use anyhow::Result;

use super::release::Release;
use crate::container::{self, loadbalancer};
use crate::report::with_hint;

impl Release<'_> {
    /// hoist-proxy on the load balancer, as on a web host; nothing without one.
    pub(super) async fn boot_loadbalancer(&self) -> Result<()> {
        let Some(server) = self.loadbalancer else {
            return Ok(());
        };
        let credentials = self.prepared.proxy_credentials.clone();
        let booted = self
            .interruptible(container::boot_proxy(self.config, server, credentials))
            .await
            .map_err(|err| err.context(format!("on the load balancer `{}`", server.host)))?;
        if let Some(warning) = booted.warning {
            self.printer.warn(warning);
        }
        Ok(())
    }

    /// Point the load balancer at every web host in deploy.toml that is not drained.
    pub(super) async fn sync_loadbalancer(&self) -> Result<()> {
        let Some(server) = self.loadbalancer else {
            return Ok(());
        };
        let progress = self.reporter.host(&server.host);
        progress.step("updating the load balancer");
        let synced = async {
            let drained = loadbalancer::drained(&server.session, self.config).await?;
            let hosts = loadbalancer::rotation(self.config, &drained);
            loadbalancer::sync(server, self.config, &hosts, &self.prepared.lb_secrets).await?;
            Ok::<_, anyhow::Error>((hosts, drained))
        }
        .await;
        match synced {
            Ok((hosts, drained)) => {
                let out = if drained.is_empty() {
                    String::new()
                } else {
                    format!(" ({} drained)", drained.join(", "))
                };
                progress.done(format!("load balancer sends to {}{out}", hosts.join(", ")));
                Ok(())
            }
            Err(err) => {
                progress.failed("load balancer not updated");
                let hint = if loadbalancer::refused(&err) {
                    "the release is live on every web host and the load balancer keeps its \
                     previous web hosts; `hoist lb details` shows which are healthy, and the \
                     next `hoist deploy` tries again"
                } else {
                    "the release is live on every web host; the load balancer may still send to \
                     its previous web hosts: `hoist lb details` shows them, and the next \
                     `hoist deploy` tries again"
                };
                Err(with_hint(err, hint))
            }
        }
    }
}
