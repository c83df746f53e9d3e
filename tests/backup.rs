//! Backups of accessories, end to end on a sandbox server: a real PostgreSQL accessory (the
//! image `scripts/lib/postgres-image` builds from Debian's packages), the hoist-backup image
//! built from backup/Dockerfile, and a real S3 server (SeaweedFS) reached over the sandbox
//! network. Rows come back after the volume is destroyed; verify passes on a good backup and
//! fails on a damaged object; wrong credentials, a missing bucket and a dump failing midway
//! leave no backup listed and the database untouched; a schedule of seconds takes backups
//! while no hoist command runs, and retention keeps exactly what it says; a volume's files
//! round-trip byte for byte.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::s3::{ACCESS_KEY, SECRET_KEY, Seaweed, seaweed};
use support::sandbox::{Sandbox, app_dir, assert_success, text, write_config};
use support::{TestContext, eventually};

const ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const DB_PASSWORD: &str = "db-pass-7781";

/// What a test's deploy.toml says: a bucket of its own on this process's SeaweedFS, and the
/// PostgreSQL and hoist-backup images pushed to the sandbox registry.
struct Setup<'a> {
    sandbox: &'a Sandbox,
    host: String,
    postgres: String,
    backup_image: String,
    endpoint: String,
    bucket: String,
}

impl<'a> Setup<'a> {
    async fn new(sandbox: &'a Sandbox, docker: &bollard::Docker, prefix: &str) -> Setup<'a> {
        let bucket = support::unique_name(prefix).to_lowercase();
        seaweed().create_bucket(&bucket);
        let host = sandbox.address(0);
        Setup {
            sandbox,
            endpoint: seaweed().endpoint_for(&host),
            host,
            postgres: sandbox.push_postgres_image(docker).await,
            backup_image: sandbox.push_backup_image(docker, prefix).await,
            bucket,
        }
    }

    fn write(&self, dir: &Path, accessories: &str, backup_extra: &str) {
        let (username, _) = self.sandbox.registry_credentials();
        write_config(
            dir,
            self.sandbox,
            std::slice::from_ref(&self.host),
            "",
            &format!(
                "[registry]\nserver = \"{registry}\"\nusername = \"{username}\"\n\
                 password = \"REGISTRY_PASSWORD\"\n\n\
                 [backup]\nimage = \"{image}\"\nendpoint = \"{endpoint}\"\nbucket = \"{bucket}\"\n\
                 access_key_id = \"S3_KEY\"\nsecret_access_key = \"S3_SECRET\"\n{backup_extra}\n\n\
                 {accessories}",
                registry = self.sandbox.registry(),
                image = self.backup_image,
                endpoint = self.endpoint,
                bucket = self.bucket,
            ),
        );
    }
}

fn secrets(dir: &Path, sandbox: &Sandbox, s3_secret: &str) {
    let (_, password) = sandbox.registry_credentials();
    std::fs::create_dir_all(dir.join(".hoist")).expect("mkdir .hoist");
    std::fs::write(
        dir.join(".hoist/secrets"),
        format!(
            "REGISTRY_PASSWORD={password}\nS3_KEY={ACCESS_KEY}\nS3_SECRET={s3_secret}\n\
             BACKUP_KEY={ENCRYPTION_KEY}\nPOSTGRES_PASSWORD={DB_PASSWORD}\n"
        ),
    )
    .expect("write secrets");
}

/// The ids of complete backups under `prefix`, straight from the bucket.
fn manifests(s3: &Seaweed, bucket: &str, prefix: &str) -> BTreeSet<String> {
    s3.keys(bucket, prefix)
        .iter()
        .filter_map(|key| key.strip_suffix("/manifest.json"))
        .filter_map(|key| key.rsplit('/').next())
        .map(str::to_string)
        .collect()
}

/// `sql` through psql in accessory `db` as `user` on database `user`.
fn psql(context: &TestContext, dir: &Path, user: &str, sql: &str) -> std::process::Output {
    context.hoist_in(
        dir,
        &[
            "accessory",
            "exec",
            "db",
            "psql",
            "-U",
            user,
            "-d",
            user,
            "-tAc",
            sql,
        ],
    )
}

/// Until accessory `db` accepts TCP connections (its init-time server takes none).
fn db_ready(context: &TestContext, dir: &Path, user: &str) -> bool {
    eventually(Duration::from_secs(90), || {
        context
            .hoist_in(
                dir,
                &[
                    "accessory",
                    "exec",
                    "db",
                    "pg_isready",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    user,
                ],
            )
            .status
            .success()
    })
}

fn postgres_accessory(image: &str, host: &str, backup: &str) -> String {
    format!(
        "[accessories.db]\nimage = \"{image}\"\nhost = \"{host}\"\n\
         volumes = [\"hello-db-data:/var/lib/postgresql/data\"]\n\
         env = {{ clear = {{ POSTGRES_USER = \"app\" }}, secret = [\"POSTGRES_PASSWORD\"] }}\n\n\
         [accessories.db.backup]\nkind = \"postgres\"\n{backup}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backups_restore_verify_fail_cleanly_and_run_on_schedule() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "backup", 1);
    let docker = support::docker().await;
    let s3 = seaweed();
    let setup = Setup::new(&sandbox, &docker, "backup").await;
    let (host, postgres, bucket) = (&setup.host, &setup.postgres, &setup.bucket);
    let dir = app_dir();
    secrets(dir.path(), &sandbox, SECRET_KEY);
    let configure = |backup: &str, backup_extra: &str| {
        setup.write(
            dir.path(),
            &postgres_accessory(postgres, host, backup),
            &format!("encryption_key = \"BACKUP_KEY\"\n{backup_extra}"),
        )
    };
    configure("retention = { keep_last = 2 }", "");
    let hoist = |args: &[&str]| context.hoist_in(dir.path(), args);
    let psql = |sql: &str| {
        let output = psql(&context, dir.path(), "app", sql);
        let (stdout, stderr) = text(&output);
        (output.status.success(), stdout.trim().to_string(), stderr)
    };
    let ready = || db_ready(&context, dir.path(), "app");

    // Boot: the accessory and its backup agent.
    assert_success(
        &hoist(&["accessory", "boot", "db"]),
        "hoist accessory boot db",
    );
    assert!(ready(), "PostgreSQL did not come up");
    let agent = sandbox.ssh(
        0,
        "docker ps --format '{{.Names}}' --filter name=hoist-backup-hello",
    );
    assert!(
        text(&agent).0.contains("hoist-backup-hello"),
        "the agent runs"
    );
    // Its secrets are in its environment, not in its command or labels.
    let inspect = text(&sandbox.ssh(
        0,
        "docker inspect --format '{{json .Config.Cmd}} {{json .Config.Labels}}' hoist-backup-hello",
    ))
    .0;
    assert!(
        !inspect.contains(SECRET_KEY) && !inspect.contains(ENCRYPTION_KEY),
        "{inspect}"
    );

    let (ok, _, stderr) = psql(
        "CREATE TABLE items (id int PRIMARY KEY, name text); \
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5000) g; \
         CREATE ROLE reporting LOGIN PASSWORD 'r'; GRANT SELECT ON items TO reporting;",
    );
    assert!(ok, "create rows: {stderr}");

    // A backup now; the list shows it.
    let output = hoist(&["backup", "now", "db"]);
    assert_success(&output, "hoist backup now db");
    let listed = hoist(&["backup", "list", "db", "--json"]);
    assert_success(&listed, "hoist backup list");
    let value: Value = serde_json::from_str(text(&listed).0.trim()).expect("list --json");
    let backups = value["backups"].as_array().expect("backups");
    assert_eq!(backups.len(), 1, "{value}");
    assert_eq!(backups[0]["manifest"]["kind"], "postgres");
    assert_eq!(backups[0]["manifest"]["encrypted"], true);
    let first = backups[0]["manifest"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Encrypted at rest: the bucket holds no plaintext row.
    let prefix = format!("hello/db/{first}");
    let dump = s3.get(bucket, &format!("{prefix}/dump.pgdump.zst"));
    assert!(dump.starts_with(b"HOISTENC1"), "the dump object is sealed");

    // The data volume destroyed; restore brings every row (and the role) back.
    assert_success(&hoist(&["accessory", "remove", "db"]), "remove db");
    assert_success(
        &sandbox.ssh(0, "docker volume rm hello-db-data"),
        "rm the volume",
    );
    assert_success(&hoist(&["accessory", "boot", "db"]), "boot db again");
    assert!(ready(), "PostgreSQL did not come up on an empty volume");
    let (ok, _, _) = psql("SELECT count(*) FROM items");
    assert!(!ok, "the table is gone with the volume");
    let refused = hoist(&["backup", "restore", "db"]);
    assert!(
        !refused.status.success(),
        "a restore without --yes off a terminal is refused"
    );
    assert!(text(&refused).1.contains("--yes"), "{}", text(&refused).1);
    assert_success(
        &hoist(&["backup", "restore", "db", "--yes"]),
        "hoist backup restore",
    );
    assert_eq!(psql("SELECT count(*) FROM items").1, "5000");
    assert_eq!(
        psql("SELECT count(*) FROM pg_roles WHERE rolname = 'reporting'").1,
        "1"
    );

    // Verify passes on the good backup and is recorded.
    let verified = hoist(&["backup", "verify", "db"]);
    assert_success(&verified, "hoist backup verify");
    assert!(
        text(&verified).1.contains("1 tables"),
        "{}",
        text(&verified).1
    );

    // Wrong credentials, a missing bucket: clear errors, no backup listed, rows untouched.
    secrets(dir.path(), &sandbox, "wrong-secret");
    let output = hoist(&["backup", "now", "db"]);
    assert!(!output.status.success(), "wrong credentials must fail");
    let stderr = text(&output).1;
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(stderr.contains("hint: check the access key"), "{stderr}");
    secrets(dir.path(), &sandbox, SECRET_KEY);
    configure(
        "retention = { keep_last = 2 }\nbucket = \"no-such-bucket\"",
        "",
    );
    let output = hoist(&["backup", "now", "db"]);
    assert!(!output.status.success(), "a missing bucket must fail");
    let stderr = text(&output).1;
    assert!(
        stderr.contains("does not exist") && stderr.contains("create the bucket"),
        "{stderr}"
    );
    // A backup failing midway (roles dumped and uploaded, then pg_dump fails): nothing kept.
    configure("retention = { keep_last = 2 }\ndatabase = \"missing\"", "");
    let output = hoist(&["backup", "now", "db"]);
    assert!(
        !output.status.success(),
        "a failing dump must fail the backup"
    );
    let stderr = text(&output).1;
    assert!(
        stderr.contains("exited with status") && stderr.contains("missing"),
        "{stderr}"
    );
    configure("retention = { keep_last = 2 }", "");
    assert_eq!(
        manifests(s3, bucket, "hello/db/"),
        BTreeSet::from([first.clone()])
    );
    assert_eq!(
        s3.keys(bucket, "hello/db/").len(),
        3 + 1,
        "only the first backup's objects (roles, dump, manifest, verify): {:?}\n{stderr}",
        s3.keys(bucket, "hello/db/")
    );
    assert_eq!(psql("SELECT count(*) FROM items").1, "5000");
    let details = text(&hoist(&["details"])).0;
    assert!(
        details.contains("backups of db") && details.contains("last failure"),
        "{details}"
    );

    // A damaged object: verify fails clearly and says so in the list; restore refuses it.
    assert_success(&hoist(&["backup", "now", "db"]), "a second backup");
    let ids = manifests(s3, bucket, "hello/db/");
    let second = ids
        .iter()
        .find(|id| **id != first)
        .expect("a second backup")
        .clone();
    let key = format!("hello/db/{second}/dump.pgdump.zst");
    let mut damaged = s3.get(bucket, &key);
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    s3.put(bucket, &key, &damaged);
    let output = hoist(&["backup", "verify", "db", &second]);
    assert!(
        !output.status.success(),
        "verify of a damaged backup must fail"
    );
    let stderr = text(&output).1;
    assert!(
        stderr.contains("failed verification") && stderr.contains("damaged"),
        "{stderr}"
    );
    let table = text(&hoist(&["backup", "list", "db"])).0;
    assert!(table.contains("FAILED"), "{table}");
    let output = hoist(&["backup", "restore", "db", &second, "--yes"]);
    assert!(
        !output.status.success(),
        "restoring a damaged backup must fail"
    );
    assert_eq!(
        psql("SELECT count(*) FROM items").1,
        "5000",
        "untouched by the refused restore"
    );

    // On a schedule of 2s with keep_last 3: backups while no hoist command runs, and never
    // more kept than the policy says once each run has pruned.
    configure("schedule = \"2s\"\nretention = { keep_last = 3 }", "");
    assert_success(&hoist(&["backup", "boot"]), "hoist backup boot");
    let mut seen = BTreeSet::new();
    let enough = eventually(Duration::from_secs(90), || {
        seen.extend(manifests(s3, bucket, "hello/db/"));
        seen.len() >= 2 + 4
    });
    assert!(enough, "scheduled backups: only {seen:?}");
    configure("retention = { keep_last = 3 }", "");
    assert_success(&hoist(&["backup", "boot"]), "unscheduled again");
    seen.extend(manifests(s3, bucket, "hello/db/"));
    let kept = manifests(s3, bucket, "hello/db/");
    let newest: BTreeSet<String> = seen.iter().rev().take(3).cloned().collect();
    assert_eq!(
        kept, newest,
        "keep_last 3 keeps the three newest of {seen:?}"
    );
    let details = text(&hoist(&["details"])).0;
    assert!(details.contains("last success"), "{details}");

    support::remove_images(&docker, &[postgres, &setup.backup_image]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_round_trips_byte_for_byte() {
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "backupvol", 1);
    let docker = support::docker().await;
    let setup = Setup::new(&sandbox, &docker, "backupvol").await;
    let (host, image) = (&setup.host, &setup.postgres);
    let dir = app_dir();
    secrets(dir.path(), &sandbox, SECRET_KEY);
    // Any long-running container with a named volume; this one exits at once on TERM.
    setup.write(
        dir.path(),
        &format!(
            "[accessories.files]\nimage = \"{image}\"\nhost = \"{host}\"\n\
             volumes = [\"hello-files:/srv/data\"]\n\
             cmd = \"sh -c 'trap \\\"exit 0\\\" TERM; while true; do sleep 0.2; done'\"\n\n\
             [accessories.files.backup]\nkind = \"volume\"\n"
        ),
        "",
    );
    let hoist = |args: &[&str]| context.hoist_in(dir.path(), args);
    let sh = |script: &str| {
        let output = hoist(&["accessory", "exec", "files", "sh", "-c", script]);
        assert_success(&output, script);
        text(&output).0
    };
    assert_success(&hoist(&["accessory", "boot", "files"]), "boot files");
    sh(
        "mkdir -p /srv/data/a/b && head -c 3000000 /dev/urandom > /srv/data/a/b/blob \
        && printf 'hello\\n' > /srv/data/note.txt && ln -s note.txt /srv/data/link \
        && chown 123:456 /srv/data/note.txt && chmod 640 /srv/data/note.txt",
    );
    let listing =
        "cd /srv/data && find . -printf '%p %y %m %U:%G %s %l\\n' | sort && sha256sum a/b/blob";
    let before = sh(listing);
    assert_success(
        &hoist(&["backup", "now", "files"]),
        "hoist backup now files",
    );
    sh("rm -rf /srv/data/* && echo junk > /srv/data/junk");
    assert_success(
        &hoist(&["backup", "restore", "files", "--yes"]),
        "restore files",
    );
    let after = sh(listing);
    assert_eq!(before, after, "the volume's files, byte for byte");
    assert!(!after.contains("junk"));
    let verified = hoist(&["backup", "verify", "files"]);
    assert_success(&verified, "verify files");
    support::remove_images(&docker, &[image, &setup.backup_image]).await;
}

/// `examples/postgres-loki` on a sandbox server: its deploy.toml with only what a sandbox needs
/// changed (the host, registry, SSH files and bucket; the images built here, since none can be
/// pulled: the test app for the app, the PostgreSQL test image for PostgreSQL and, standing in
/// for Loki, holding its volume; plain HTTP instead of ACME). `hoist setup` brings up all of it
/// with the backup agent; a backup of both accessories, then a restore under maintenance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_stack_sets_up_and_its_backup_restores() {
    use support::sandbox::{git, init_repository, testapp_dir};
    let context = TestContext::new();
    let (_guard, sandbox) = Sandbox::up(&context, "backupex", 1);
    let docker = support::docker().await;
    let setup = Setup::new(&sandbox, &docker, "backupex").await;
    let (host, postgres, backup_image) = (&setup.host, &setup.postgres, &setup.backup_image);
    let proxy_image = sandbox.push_proxy_image(&docker, "backupex").await;
    let (username, password) = sandbox.registry_credentials();
    let dir = testapp_dir(&format!(
        "REGISTRY_PASSWORD={password}\nPOSTGRES_PASSWORD={DB_PASSWORD}\n\
         DATABASE_PASSWORD={DB_PASSWORD}\nR2_ACCESS_KEY_ID={ACCESS_KEY}\n\
         R2_SECRET_ACCESS_KEY={SECRET_KEY}\nBACKUP_ENCRYPTION_KEY={ENCRYPTION_KEY}\n"
    ));
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/postgres-loki/deploy.toml"),
    )
    .expect("read the example");
    let mut config: toml::Table = example.parse().expect("the example is TOML");
    let set = |table: &mut toml::Table, path: &[&str], value: toml::Value| {
        let mut table = table;
        for key in &path[..path.len() - 1] {
            table = table[*key].as_table_mut().expect("a table");
        }
        table.insert(path[path.len() - 1].to_string(), value);
    };
    let s = |text: &str| toml::Value::String(text.to_string());
    let registry = sandbox.registry();
    set(&mut config, &["image"], s(&format!("{registry}/shop")));
    set(&mut config, &["registry", "server"], s(&registry));
    set(&mut config, &["registry", "username"], s(&username));
    set(
        &mut config,
        &["registry", "password"],
        s("REGISTRY_PASSWORD"),
    );
    set(
        &mut config,
        &["servers", "web", "hosts"],
        toml::Value::Array(vec![s(host)]),
    );
    let proxy = config["proxy"].as_table_mut().expect("[proxy]");
    proxy.remove("hosts");
    proxy.insert("tls".to_string(), toml::Value::Boolean(false));
    proxy.insert("image".to_string(), s(&proxy_image));
    let mut ssh = toml::Table::new();
    ssh.insert(
        "keys".to_string(),
        toml::Value::Array(vec![s(&sandbox.key().display().to_string())]),
    );
    ssh.insert(
        "known_hosts".to_string(),
        s(&sandbox.known_hosts().display().to_string()),
    );
    config.insert("ssh".to_string(), toml::Value::Table(ssh));
    for accessory in ["db", "loki"] {
        set(&mut config, &["accessories", accessory, "host"], s(host));
        set(
            &mut config,
            &["accessories", accessory, "image"],
            s(postgres),
        );
    }
    set(
        &mut config,
        &["accessories", "loki", "cmd"],
        s("sh -c 'trap \"exit 0\" TERM; mkdir -p /loki/chunks; while true; do sleep 0.2; done'"),
    );
    set(&mut config, &["backup", "endpoint"], s(&setup.endpoint));
    set(&mut config, &["backup", "region"], s(support::s3::REGION));
    set(&mut config, &["backup", "bucket"], s(&setup.bucket));
    set(&mut config, &["backup", "image"], s(backup_image));
    std::fs::write(
        dir.path().join("deploy.toml"),
        toml::to_string(&config).expect("TOML"),
    )
    .expect("write deploy.toml");
    std::fs::write(dir.path().join(".gitignore"), ".hoist/secrets*\n").expect("gitignore");
    init_repository(dir.path());
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-q", "-m", "the example stack"]);
    let hoist = |args: &[&str]| context.hoist_in(dir.path(), args);

    assert_success(&hoist(&["setup"]), "hoist setup of the example stack");
    let (status, body) = support::http_get(&format!("{host}:80"), "/").expect("GET /");
    assert_eq!(status, 200, "{body}");
    let psql = |sql: &str| {
        let output = psql(&context, dir.path(), "shop", sql);
        assert_success(&output, sql);
        text(&output).0.trim().to_string()
    };
    assert!(
        db_ready(&context, dir.path(), "shop"),
        "PostgreSQL did not come up"
    );
    psql(
        "CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 300);",
    );
    let output = hoist(&[
        "accessory",
        "exec",
        "loki",
        "sh",
        "-c",
        "echo chunk > /loki/chunks/one",
    ]);
    assert_success(&output, "a Loki file");

    assert_success(&hoist(&["backup", "now"]), "hoist backup now (db and loki)");
    let listed = text(&hoist(&["backup", "list"])).0;
    assert!(
        listed.contains("postgres") && listed.contains("volume"),
        "{listed}"
    );
    psql("DROP TABLE orders");
    assert_success(
        &hoist(&["backup", "restore", "db", "--yes", "--maintenance"]),
        "restore under maintenance",
    );
    assert_eq!(psql("SELECT count(*) FROM orders"), "300");
    let (status, _) = support::http_get(&format!("{host}:80"), "/").expect("GET / after");
    assert_eq!(status, 200, "the app is live again after the restore");
    assert_success(&hoist(&["backup", "verify", "loki"]), "verify loki's files");
    support::remove_images(&docker, &[postgres, backup_image, &proxy_image]).await;
}
