//! The servers one command works on, as a whole: which hosts run the app and which one is the
//! primary (it holds the deploy lock), connecting to all of them or reporting which could not be
//! reached, holding the deploy lock with the Ctrl-C listener while a command changes servers, and
//! closing every connection once. Commands that change servers (deploy, rollback, proxy reboot)
//! and commands that read them (details, versions) go through here instead of repeating it;
//! [`Locked`] is the whole run of a command that changes some hosts at once under the lock.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::lock::{self, LockInfo};
use crate::naming;
use crate::printer::Printer;
use crate::remote::{Connector, Server, Unreachable};
use crate::report::hinted;
use crate::reporter::Reporter;

/// The host holding the deploy lock: the first host of the primary role (`primary_role`), whatever
/// `--hosts` narrows and whatever other roles exist, so every command of a service meets the same
/// lock.
pub fn primary_host(config: &Config) -> Option<String> {
    config
        .roles
        .get(&config.primary_role)
        .and_then(|role| role.hosts.first())
        .or_else(|| {
            config
                .roles
                .values()
                .flat_map(|role| role.hosts.first())
                .next()
        })
        .cloned()
}

/// The hosts among `hosts` that run an app role (not only accessories or the load balancer).
pub fn app_hosts(config: &Config, hosts: &[String]) -> Vec<String> {
    hosts
        .iter()
        .filter(|host| config.roles.values().any(|role| role.hosts.contains(host)))
        .cloned()
        .collect()
}

/// `hosts` with the primary host first if it is not among them (the lock lives there).
pub fn with_primary(config: &Config, hosts: &[String]) -> Vec<String> {
    let mut all = hosts.to_vec();
    if let Some(primary) = primary_host(config)
        && !all.contains(&primary)
    {
        all.insert(0, primary);
    }
    all
}

/// Connected servers, in the order their hosts were given.
pub struct Fleet {
    pub servers: Vec<Server>,
}

impl Fleet {
    /// Connect to every host. If any can't be reached, close the others and fail: nothing was
    /// changed. One unreachable host gives its own error; several give a warning each.
    pub async fn connect(
        config: &Config,
        hosts: &[String],
        reporter: &Reporter,
        printer: &Printer,
        what: &str,
    ) -> Result<Fleet> {
        let (fleet, unreachable) = Self::connect_reachable(config, hosts, reporter).await?;
        if unreachable.is_empty() {
            return Ok(fleet);
        }
        fleet.close().await;
        let single = (unreachable.len() == 1).then(|| unreachable[0].host.clone());
        let err = unreachable_error(unreachable, hosts.len(), printer);
        Err(match single {
            Some(host) => err.context(format!(
                "Can't {what} while `{host}` is unreachable; nothing was changed"
            )),
            None => err.context(format!("Can't {what}; nothing was changed")),
        })
    }

    /// Connect to every host that can be reached; the others are returned with their reasons.
    pub async fn connect_reachable(
        config: &Config,
        hosts: &[String],
        reporter: &Reporter,
    ) -> Result<(Fleet, Vec<Unreachable>)> {
        let connector = Connector::from_config(config)?;
        let (servers, unreachable) = connector.connect_all(hosts, reporter).await?;
        Ok((Fleet { servers }, unreachable))
    }

    pub fn server(&self, host: &str) -> Option<&Server> {
        self.servers.iter().find(|server| server.host == host)
    }

    /// The servers among `hosts`, in the fleet's order.
    pub fn among<'a>(&'a self, hosts: &[String]) -> Vec<&'a Server> {
        self.servers
            .iter()
            .filter(|server| hosts.contains(&server.host))
            .collect()
    }

    /// Close every connection.
    pub async fn close(&self) {
        for server in &self.servers {
            server.session.close().await;
        }
    }

    /// [`Fleet::lock`] without waiting for another holder, for commands that change little;
    /// every connection is closed if the lock cannot be taken.
    pub async fn lock_now(
        &self,
        config: &Config,
        info: LockInfo,
        printer: &Printer,
        on_quit: &'static str,
    ) -> Result<Held> {
        let held = self
            .lock(
                config,
                info,
                Duration::ZERO,
                printer,
                on_quit,
                CancellationToken::new(),
            )
            .await;
        if held.is_err() {
            self.close().await;
        }
        held
    }

    /// Take the deploy lock on the primary host (waiting up to `wait` for another holder), and
    /// listen for Ctrl-C while it is held: the first one cancels `interrupt` (also
    /// [`Held::interrupt`]), so the command stops at its next safe point; a second one quits at
    /// once.
    pub async fn lock(
        &self,
        config: &Config,
        info: LockInfo,
        wait: Duration,
        printer: &Printer,
        on_quit: &'static str,
        interrupt: CancellationToken,
    ) -> Result<Held> {
        let primary =
            primary_host(config).ok_or_else(|| anyhow!("The configuration has no app hosts"))?;
        let server = self
            .server(&primary)
            .ok_or_else(|| anyhow!("The primary host `{primary}` is not connected"))?;
        let scope = naming::scope(&config.service, config.destination.as_deref());
        take_lock(server, &scope, &info, wait, printer).await?;
        let listener = tokio::spawn(listen_for_ctrl_c(interrupt.clone(), *printer, on_quit));
        Ok(Held {
            host: primary,
            scope,
            info,
            interrupt,
            listener,
        })
    }
}

/// The deploy lock, held.
pub struct Held {
    host: String,
    scope: String,
    pub info: LockInfo,
    /// Cancelled by the first Ctrl-C.
    pub interrupt: CancellationToken,
    listener: JoinHandle<()>,
}

impl Held {
    /// The lock was released with other work on its host (`lock::release_command`): stop
    /// listening for Ctrl-C.
    pub fn released(self) {
        self.listener.abort();
    }

    /// Stop listening for Ctrl-C and release the lock; a failure is a warning (the command's own
    /// outcome matters more), with the way out.
    pub async fn release(self, fleet: &Fleet, printer: &Printer) {
        self.listener.abort();
        let Some(server) = fleet.server(&self.host) else {
            return;
        };
        if let Err(err) = lock::release(&server.session, &self.scope, self.info.id.as_deref()).await
        {
            printer.warn(format!(
                "{err:#}; release it with `hoist lock release` once you are sure no deploy runs"
            ));
        }
    }
}

/// Take the lock, waiting up to `wait` for another holder to release it.
async fn take_lock(
    server: &Server,
    scope: &str,
    info: &LockInfo,
    wait: Duration,
    printer: &Printer,
) -> Result<()> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        let Some(holder) = lock::try_acquire(&server.session, scope, info).await? else {
            return Ok(());
        };
        if started.elapsed() >= wait {
            return Err(hinted(
                format!(
                    "The deploy lock on `{}` is held by {}",
                    server.host,
                    holder.describe()
                ),
                "wait for that deploy to finish (`--lock-wait 5m` waits for it); if none is \
                 running (a killed deploy leaves its lock), `hoist lock release` removes it",
            ));
        }
        if !announced {
            printer.status(
                "Waiting",
                format!("for the deploy lock, held by {}", holder.describe()),
            );
            announced = true;
        }
        tokio::time::sleep(Duration::from_secs(1).min(wait.saturating_sub(started.elapsed())))
            .await;
    }
}

async fn listen_for_ctrl_c(interrupt: CancellationToken, printer: Printer, on_quit: &str) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    printer.warn(
        "interrupted: stopping at the next safe point (a proxy switch in progress finishes \
         first); Ctrl-C again to quit at once",
    );
    interrupt.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        printer.warn(format!("quit at once: the deploy lock stays; {on_quit}"));
        std::process::exit(130);
    }
}

/// One unreachable host's own error, or for several a warning each and a summary.
pub fn unreachable_error(
    unreachable: Vec<Unreachable>,
    total: usize,
    printer: &Printer,
) -> anyhow::Error {
    let count = unreachable.len();
    let mut failures = unreachable.into_iter();
    if count == 1
        && let Some(failure) = failures.next()
    {
        return failure.error;
    }
    for failure in failures {
        printer.warn(format!("{}: {:#}", failure.host, failure.error));
    }
    hinted(
        format!("{count} of {total} hosts are unreachable"),
        "see the warnings above for each host",
    )
}

/// A command changing some hosts at once under the deploy lock (`app stop`, `proxy stop`):
/// [`Locked::begin`] connects (to the primary host too, for the lock) and locks without waiting;
/// the command works on [`Locked::servers`] with [`Locked::reporter`]; [`Locked::finish`]
/// releases the lock, closes every connection and returns the first host's error.
pub struct Locked {
    fleet: Fleet,
    held: Held,
    hosts: Vec<String>,
    pub reporter: Reporter,
    started: Instant,
}

impl Locked {
    /// `command` names the lock's holder (`app stop`); `on_quit` says where to look when the
    /// command is quit mid-way.
    pub async fn begin(
        config: &Config,
        hosts: &[String],
        command: &str,
        on_quit: &'static str,
        printer: &Printer,
    ) -> Result<Locked> {
        let started = Instant::now();
        let performer = crate::version::performer(&config.root);
        let info = LockInfo::new(&performer, command, None)?;
        let reporter = Reporter::new(*printer);
        let connect_to = with_primary(config, hosts);
        let what = format!("run `hoist {command}`");
        let fleet = Fleet::connect(config, &connect_to, &reporter, printer, &what).await?;
        let held = fleet.lock_now(config, info, printer, on_quit).await?;
        Ok(Locked {
            fleet,
            held,
            hosts: hosts.to_vec(),
            reporter,
            started,
        })
    }

    /// The servers the command works on (not the primary host when added only for the lock).
    pub fn servers(&self) -> Vec<&Server> {
        self.fleet.among(&self.hosts)
    }

    /// Close the connections of a command that removed the lock itself, with other work on the
    /// primary host (`hoist remove` deletes the directory the lock lives in).
    pub async fn finish_released(self) -> Duration {
        self.held.released();
        self.fleet.close().await;
        self.started.elapsed()
    }

    /// Release the lock and close the connections; then the first failure of `results` (one
    /// per server, in [`Locked::servers`]'s order) with its host, the others as warnings, or
    /// how long the command took.
    pub async fn finish(self, results: Vec<Result<()>>, printer: &Printer) -> Result<Duration> {
        self.held.release(&self.fleet, printer).await;
        self.fleet.close().await;
        let mut first = None;
        for (server, result) in self.fleet.among(&self.hosts).iter().zip(results) {
            if let Err(err) = result {
                let err = err.context(format!("on `{}`", server.host));
                match first {
                    None => first = Some(err),
                    Some(_) => printer.warn(format!("{err:#}")),
                }
            }
        }
        match first {
            Some(err) => Err(err),
            None => Ok(self.started.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path, body: &str) -> Config {
        std::fs::write(
            dir.join("deploy.toml"),
            format!("service = \"a\"\nimage = \"r/a\"\n{body}"),
        )
        .expect("write deploy.toml");
        crate::config::load(Some(&dir.join("deploy.toml")), None).expect("config loads")
    }

    #[test]
    fn the_lock_lives_on_the_first_host_of_the_primary_role_whatever_other_roles_exist() {
        let dir = tempfile::tempdir().expect("temp dir");
        let web = "[servers.web]\nhosts = [\"w1\", \"w2\"]\n";
        assert_eq!(
            primary_host(&config(dir.path(), web)).as_deref(),
            Some("w1")
        );
        // `api` sorts before `web`: adding it must not move the lock.
        let more = format!("{web}[servers.api]\nhosts = [\"a1\"]\nproxy = true\n");
        assert_eq!(
            primary_host(&config(dir.path(), &more)).as_deref(),
            Some("w1")
        );
        let chosen = format!("primary_role = \"api\"\n{more}");
        assert_eq!(
            primary_host(&config(dir.path(), &chosen)).as_deref(),
            Some("a1")
        );
        let no_web = "[servers.jobs]\nhosts = [\"j1\"]\n";
        assert_eq!(
            primary_host(&config(dir.path(), no_web)).as_deref(),
            Some("j1")
        );
    }

    #[test]
    fn the_primary_host_is_added_in_front_when_hosts_narrow_it_away() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config(dir.path(), "[servers.web]\nhosts = [\"w1\", \"w2\"]\n");
        assert_eq!(with_primary(&config, &["w2".into()]), ["w1", "w2"]);
        assert_eq!(
            with_primary(&config, &["w2".into(), "w1".into()]),
            ["w2", "w1"]
        );
    }
}
