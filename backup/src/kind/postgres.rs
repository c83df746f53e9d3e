//! PostgreSQL: `pg_dumpall --roles-only` and `pg_dump --format=custom` of one database, run
//! inside the accessory's own container (so the client matches the server's version); put
//! back with `psql` (roles) and `pg_restore --clean --single-transaction` (the database is
//! either wholly restored or left as it was); verified by restoring into a throwaway container
//! of the accessory's image and asking it a query.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;

use super::{Job, say};
use crate::dock;
use crate::manifest::{Manifest, Part};
use crate::pipeline;
use crate::report::hinted;
use crate::spec::HELPER_LABEL;

/// How long a throwaway server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const DEFAULT_QUERY: &str = "SELECT count(*) FROM pg_catalog.pg_class c \
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')";

pub async fn backup(job: &Job<'_>, user: &str, database: &str) -> Result<Vec<Part>> {
    say(format!("{}: dumping roles", job.accessory));
    let roles = dump(
        job,
        "roles",
        "roles.sql.zst",
        &["pg_dumpall", "--roles-only", "--username", user],
    )
    .await?;
    say(format!("{}: dumping database `{database}`", job.accessory));
    let data = dump(
        job,
        "dump",
        "dump.pgdump.zst",
        &[
            "pg_dump",
            "--format=custom",
            "--compress=0",
            "--username",
            user,
            "--dbname",
            database,
        ],
    )
    .await?;
    Ok(vec![roles, data])
}

/// Stream `cmd`'s stdout into the part; commit only if it exits 0.
async fn dump(job: &Job<'_>, name: &str, object: &str, cmd: &[&str]) -> Result<Part> {
    let mut running = dock::exec_reader(job.docker, job.container, cmd, &[]).await?;
    let pending = pipeline::upload(
        job.store,
        job.id,
        name,
        object,
        &mut running.stdout,
        job.level,
        job.key,
    )
    .await?;
    let ended = running.ended(job.docker).await?;
    if !ended.ok() {
        pending.abort().await;
        bail!("`{}` in `{}` {}", cmd[0], job.container, ended.describe());
    }
    pending.commit(job.store).await
}

/// Put backup `manifest` back into `container`'s server: roles, then the database (created if
/// missing), in one transaction.
pub async fn restore_into(
    job: &Job<'_>,
    container: &str,
    manifest: &Manifest,
    user: &str,
    database: &str,
) -> Result<()> {
    say(format!("{}: restoring roles", job.accessory));
    // Roles that exist already make psql complain and go on; that is the point.
    let psql = [
        "psql",
        "--username",
        user,
        "--dbname",
        "postgres",
        "--quiet",
        "--file=-",
    ];
    let ended = feed(job, container, manifest, "roles", &psql).await?;
    if !ended.ok() {
        bail!(
            "restoring roles with psql in `{container}` {}",
            ended.describe()
        );
    }
    let sql = format!(
        "SELECT 1 FROM pg_database WHERE datname = '{}'",
        database.replace('\'', "''")
    );
    let exists = query(job, container, user, "postgres", &sql).await?;
    if !exists.ok() {
        bail!(
            "asking `{container}` for its databases {}",
            exists.describe()
        );
    }
    if exists.output.trim() != "1" {
        let createdb = ["createdb", "--username", user, database];
        let created = dock::capture(job.docker, container, &createdb, &[]).await?;
        if !created.ok() {
            bail!(
                "createdb `{database}` in `{container}` {}",
                created.describe()
            );
        }
    }
    say(format!(
        "{}: restoring database `{database}`",
        job.accessory
    ));
    let pg_restore = [
        "pg_restore",
        "--username",
        user,
        "--dbname",
        database,
        "--clean",
        "--if-exists",
        "--single-transaction",
        "--exit-on-error",
    ];
    let ended = feed(job, container, manifest, "dump", &pg_restore).await?;
    if !ended.ok() {
        bail!(
            "pg_restore in `{container}` {}; the database was left as it was",
            ended.describe()
        );
    }
    Ok(())
}

/// Stream part `name` of `manifest` into the stdin of `cmd` run in `container`.
async fn feed(
    job: &Job<'_>,
    container: &str,
    manifest: &Manifest,
    name: &str,
    cmd: &[&str],
) -> Result<dock::Ended> {
    let part = manifest
        .part(name)
        .with_context(|| format!("Backup {} has no `{name}` part", manifest.id))?;
    let reader = pipeline::download(job.store, &manifest.id, part, job.key).await?;
    dock::exec_writer(job.docker, container, cmd, &[], reader).await
}

/// `sql` through psql as `user` in `database`: its answer, unaligned, without headers.
async fn query(
    job: &Job<'_>,
    container: &str,
    user: &str,
    database: &str,
    sql: &str,
) -> Result<dock::Ended> {
    let psql = [
        "psql",
        "--username",
        user,
        "--dbname",
        database,
        "--tuples-only",
        "--no-align",
        "--set=ON_ERROR_STOP=1",
        "--command",
        sql,
    ];
    dock::capture(job.docker, container, &psql, &[]).await
}

/// Restore `manifest` into a throwaway container of the accessory's image (with its
/// environment, so the same users exist) and run `query`; the answer, or the error.
pub async fn verify(
    job: &Job<'_>,
    manifest: &Manifest,
    user: &str,
    database: &str,
    verify_query: Option<&str>,
) -> Result<String> {
    let inspected = job
        .docker
        .inspect_container(job.container, None)
        .await
        .with_context(|| format!("Failed to inspect `{}`", job.container))?;
    let config = inspected.config.unwrap_or_default();
    let image = manifest
        .image
        .clone()
        .or(config.image)
        .context("Don't know which image to verify with")?;
    let name = format!("{}-backup-verify", job.container);
    dock::remove(job.docker, &name).await;
    say(format!(
        "{}: starting a throwaway {image} as {name}",
        job.accessory
    ));
    job.docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            ContainerCreateBody {
                image: Some(image.clone()),
                env: config.env,
                cmd: config.cmd,
                labels: Some([(HELPER_LABEL.to_string(), "verify".to_string())].into()),
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("Failed to create `{name}` from {image}"))?;
    let result = async {
        job.docker
            .start_container(&name, None)
            .await
            .with_context(|| format!("Failed to start `{name}`"))?;
        wait_ready(job, &name, user).await?;
        restore_into(job, &name, manifest, user, database).await?;
        let query_text = verify_query.unwrap_or(DEFAULT_QUERY);
        let answer = query(job, &name, user, database, query_text).await?;
        if !answer.ok() {
            bail!("the check query {}", answer.describe());
        }
        let answer = answer.output.trim().replace('\n', " ");
        Ok(if query_text == DEFAULT_QUERY {
            format!("restored into a throwaway {image}: {answer} tables")
        } else {
            format!("restored into a throwaway {image}: `{query_text}` answered {answer}")
        })
    }
    .await;
    dock::remove(job.docker, &name).await;
    result
}

/// Until the server accepts TCP connections: the official image's init-time server listens on
/// its socket only, so TCP readiness means the real server is up.
async fn wait_ready(job: &Job<'_>, container: &str, user: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let ready = dock::capture(
            job.docker,
            container,
            &["pg_isready", "--host", "127.0.0.1", "--username", user],
            &[],
        )
        .await?;
        if ready.ok() {
            return Ok(());
        }
        let state = job.docker.inspect_container(container, None).await?;
        if state.state.and_then(|s| s.running) != Some(true) {
            return Err(hinted(
                format!("The throwaway `{container}` stopped before accepting connections"),
                "the accessory's image or environment can't start a server on its own",
            ));
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!("`{container}` did not accept connections within {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
