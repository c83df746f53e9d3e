//! Secret values: `.hoist/secrets` and `.hoist/secrets.<destination>` under the app root, the
//! destination's definitions taking precedence. Loading only parses (dotenv.rs); a value's
//! `${VAR}` and `$(command)` are evaluated the first time [`Secrets::resolve`] asks for it, then
//! remembered, so commands for unused secrets never run. A value never reaches an argv, a log
//! line or an error message: [`Secret`] prints as `[REDACTED]`.

mod dotenv;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{Context, anyhow};

use crate::config::{Config, EnvConfig, SecretRef, display_path};
use crate::report::hinted;

use dotenv::Part;

/// A secret value. Debug and Display print `[REDACTED]`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Reading or parsing a secrets file failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("Failed to read `{}`", display_path(.path))]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Invalid secrets file: {}:{line}: {message}", display_path(.path))]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// The secrets defined for one app and destination.
pub struct Secrets {
    entries: Vec<Entry>,
    /// Name → index in `entries` of the definition that wins.
    by_name: HashMap<String, usize>,
    root: PathBuf,
    destination: Option<String>,
    resolved: Mutex<HashMap<usize, Secret>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort();
        f.debug_struct("Secrets").field("names", &names).finish()
    }
}

/// One definition, with its variables bound to earlier definitions or to the environment.
struct Entry {
    name: String,
    file: PathBuf,
    line: usize,
    pieces: Vec<Piece>,
}

enum Piece {
    Text(String),
    Secret(usize),
    Environment(String),
    Command(String),
}

impl Secrets {
    /// Parse `.hoist/secrets` and `.hoist/secrets.<destination>` under `root`. Missing files
    /// define nothing. Runs no command. (Commands use [`Secrets::for_config`].)
    #[cfg(test)]
    pub fn load(root: &Path, destination: Option<&str>) -> Result<Secrets, SecretsError> {
        Self::load_from(&root.join(".hoist/secrets"), root, destination)
    }

    /// The secrets of `config`: its `secrets_path` (default `.hoist/secrets`), then that file
    /// with `.<destination>` after it.
    pub fn for_config(config: &crate::config::Config) -> Result<Secrets, SecretsError> {
        Self::load_from(
            &config.secrets_path,
            &config.root,
            config.destination.as_deref(),
        )
    }

    /// `file`, then `file.<destination>` over it; `$(command)`s run in `root`.
    pub fn load_from(
        file: &Path,
        root: &Path,
        destination: Option<&str>,
    ) -> Result<Secrets, SecretsError> {
        let mut secrets = Secrets {
            entries: Vec::new(),
            by_name: HashMap::new(),
            root: root.to_path_buf(),
            destination: destination.map(str::to_string),
            resolved: Mutex::new(HashMap::new()),
        };
        let mut files = vec![file.to_path_buf()];
        if let Some(destination) = destination {
            let mut name = file.as_os_str().to_owned();
            name.push(format!(".{destination}"));
            files.push(name.into());
        }
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(SecretsError::Read { path: file, source }),
            };
            for definition in dotenv::parse(&text, &file)? {
                let pieces = definition
                    .parts
                    .into_iter()
                    .map(|part| match part {
                        Part::Text(text) => Piece::Text(text),
                        Part::Command(command) => Piece::Command(command),
                        Part::Variable(name) => match secrets.by_name.get(&name) {
                            Some(index) => Piece::Secret(*index),
                            None => Piece::Environment(name),
                        },
                    })
                    .collect();
                secrets
                    .by_name
                    .insert(definition.name.clone(), secrets.entries.len());
                secrets.entries.push(Entry {
                    name: definition.name,
                    file: file.clone(),
                    line: definition.line,
                    pieces,
                });
            }
        }
        Ok(secrets)
    }

    /// Whether a secret of this name is defined (its value is not evaluated).
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The value of the secret `reference` names, running its commands the first time. Blocks
    /// while a command runs (it may prompt on the terminal).
    pub fn resolve(&self, reference: &SecretRef) -> anyhow::Result<Secret> {
        match self.by_name.get(&reference.name) {
            Some(index) => self.resolve_entry(*index),
            None => Err(self.undefined(reference)),
        }
    }

    /// `[env]`-style settings as `KEY=value` lines for a container: clear values, then each
    /// named secret with its value. The result holds secret values: it goes into an Engine API
    /// call and nowhere else.
    pub fn container_env(&self, env: &EnvConfig) -> anyhow::Result<Vec<String>> {
        let mut lines: Vec<String> = env
            .clear
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        for reference in &env.secret {
            let value = self.resolve(reference)?;
            lines.push(format!("{}={}", reference.name, value.expose()));
        }
        Ok(lines)
    }

    /// Every secret the configuration names is defined. Runs no command.
    pub fn check(&self, config: &Config) -> anyhow::Result<()> {
        match config
            .secret_refs()
            .into_iter()
            .find(|reference| !self.contains(&reference.name))
        {
            Some(missing) => Err(self.undefined(missing)),
            None => Ok(()),
        }
    }

    fn undefined(&self, reference: &SecretRef) -> anyhow::Error {
        let common = display_path(&self.root.join(".hoist/secrets"));
        let place = match &self.destination {
            Some(destination) => format!("{common} (or {common}.{destination})"),
            None => common,
        };
        hinted(
            format!(
                "Secret `{}` is not defined ({} names it)",
                reference.name, reference.location
            ),
            format!("add `{}=...` to {place}", reference.name),
        )
    }

    fn resolve_entry(&self, index: usize) -> anyhow::Result<Secret> {
        if let Some(secret) = self.memo().get(&index) {
            return Ok(secret.clone());
        }
        let entry = &self.entries[index];
        let value = self.evaluate(entry).with_context(|| {
            format!(
                "Failed to resolve secret `{}` ({}:{})",
                entry.name,
                display_path(&entry.file),
                entry.line
            )
        })?;
        let secret = Secret(value);
        self.memo().insert(index, secret.clone());
        Ok(secret)
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Secret>> {
        // The memo holds no invariant a panic could break; recover it.
        self.resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn evaluate(&self, entry: &Entry) -> anyhow::Result<String> {
        let mut value = String::new();
        for piece in &entry.pieces {
            match piece {
                Piece::Text(text) => value.push_str(text),
                Piece::Secret(index) => value.push_str(self.resolve_entry(*index)?.expose()),
                Piece::Environment(name) => match std::env::var(name) {
                    Ok(text) => value.push_str(&text),
                    Err(std::env::VarError::NotPresent) => {
                        return Err(hinted(
                            format!(
                                "`{name}` is not defined: not a secret defined above line {} nor an environment variable",
                                entry.line
                            ),
                            format!(
                                "define `{name}` earlier in the secrets file, or export it before running hoist"
                            ),
                        ));
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(anyhow!("environment variable `{name}` is not valid UTF-8"));
                    }
                },
                Piece::Command(command) => value.push_str(&self.run(command)?),
            }
        }
        Ok(value)
    }

    /// Run `sh -c command` in the app root: stdout captured, stdin and stderr the user's.
    fn run(&self, command: &str) -> anyhow::Result<String> {
        let output = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&self.root)
            .stdin(Stdio::inherit())
            .stderr(Stdio::inherit())
            .stdout(Stdio::piped())
            .output()
            .with_context(|| format!("Failed to run `sh -c {command:?}`"))?;
        if !output.status.success() {
            return Err(anyhow!("command `{command}` failed with {}", output.status));
        }
        let mut stdout = String::from_utf8(output.stdout)
            .map_err(|_| anyhow!("command `{command}` printed something that isn't UTF-8"))?;
        let trimmed = stdout.trim_end_matches(['\n', '\r']).len();
        stdout.truncate(trimmed);
        Ok(stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;

    fn app(common: &str, destination: Option<(&str, &str)>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join(".hoist")).expect("mkdir");
        std::fs::write(dir.path().join(".hoist/secrets"), common).expect("write");
        if let Some((name, text)) = destination {
            std::fs::write(dir.path().join(format!(".hoist/secrets.{name}")), text).expect("write");
        }
        dir
    }

    fn reference(name: &str) -> SecretRef {
        SecretRef {
            name: name.to_string(),
            location: Location {
                file: PathBuf::from("/app/deploy.toml"),
                line: 7,
                column: 3,
            },
        }
    }

    fn value(secrets: &Secrets, name: &str) -> String {
        secrets
            .resolve(&reference(name))
            .map(|secret| secret.expose().to_string())
            .unwrap_or_else(|err| panic!("{name}: {err:#}"))
    }

    #[test]
    fn secret_prints_redacted() {
        let secret = Secret("hunter2".to_string());
        assert_eq!(format!("{secret:?} {secret}"), "[REDACTED] [REDACTED]");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn destination_file_takes_precedence() {
        let dir = app("A=common\nB=common\n", Some(("staging", "B=staging\n")));
        let secrets = Secrets::load(dir.path(), Some("staging")).expect("loads");
        assert_eq!(value(&secrets, "A"), "common");
        assert_eq!(value(&secrets, "B"), "staging");
        let secrets = Secrets::load(dir.path(), None).expect("loads");
        assert_eq!(value(&secrets, "B"), "common");
    }

    #[test]
    fn variables_expand_earlier_secrets_then_the_environment() {
        let dir = app(
            "PW=s3cret\nURL=postgres://u:${PW}@db/$HOME\nLATER=${DEFINED_BELOW}\nDEFINED_BELOW=x\n",
            Some(("prod", "DSN=\"${URL}?x=1\"\n")),
        );
        let secrets = Secrets::load(dir.path(), Some("prod")).expect("loads");
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(
            value(&secrets, "URL"),
            format!("postgres://u:s3cret@db/{home}")
        );
        assert_eq!(
            value(&secrets, "DSN"),
            format!("postgres://u:s3cret@db/{home}?x=1")
        );
        // DEFINED_BELOW isn't defined above LATER, nor in the environment.
        let err = secrets.resolve(&reference("LATER")).expect_err("undefined");
        let report = crate::report::render(&err);
        assert!(
            report.contains("Failed to resolve secret `LATER` (") && report.contains(":3)"),
            "{report}"
        );
        assert!(
            report.contains("`DEFINED_BELOW` is not defined"),
            "{report}"
        );
    }

    #[test]
    fn commands_run_lazily_once_and_failures_name_the_secret() {
        let dir = app(
            "TOKEN=$(echo run >> count; printf 'tok\\n\\n')\nBROKEN=$(exit 3)\n",
            None,
        );
        let secrets = Secrets::load(dir.path(), None).expect("loads");
        assert!(secrets.contains("BROKEN"));
        assert!(!dir.path().join("count").exists(), "load runs nothing");
        assert_eq!(value(&secrets, "TOKEN"), "tok");
        assert_eq!(value(&secrets, "TOKEN"), "tok");
        let runs = std::fs::read_to_string(dir.path().join("count")).expect("ran");
        assert_eq!(runs.lines().count(), 1, "memoised");
        let err = secrets.resolve(&reference("BROKEN")).expect_err("fails");
        let report = crate::report::render(&err);
        assert!(
            report.contains("Failed to resolve secret `BROKEN`"),
            "{report}"
        );
        assert!(report.contains("secrets:2)"), "{report}");
        assert!(report.contains("exit status: 3"), "{report}");
    }

    #[test]
    fn missing_secret_names_where_the_config_uses_it() {
        let dir = app("", None);
        let secrets = Secrets::load(dir.path(), Some("staging")).expect("loads");
        let err = secrets
            .resolve(&reference("DATABASE_URL"))
            .expect_err("missing");
        let report = crate::report::render(&err);
        assert!(
            report.starts_with(
                "error: Secret `DATABASE_URL` is not defined (/app/deploy.toml:7:3 names it)"
            ),
            "{report}"
        );
        assert!(
            report.contains("hint: add `DATABASE_URL=...` to "),
            "{report}"
        );
        assert!(report.contains(".hoist/secrets.staging)"), "{report}");
    }

    #[test]
    fn missing_files_define_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secrets = Secrets::load(dir.path(), Some("x")).expect("loads");
        assert!(!secrets.contains("A"));
    }
}
