//! `tern admin`: operator tasks run against the store a config names.
//!
//! - `bootstrap` creates the first account (two numbers, one SMPP login) if the store has
//!   none and prints its credentials as JSON.
//! - `smpp-credential create|list|revoke` manages the SMPP logins of an account (the first
//!   account unless `--account` says otherwise), as `/v1/SmppCredentials` does over HTTP.
//!
//! # The SMPP password of the bootstrap login
//!
//! The store keeps only an argon2id hash of an SMPP password, so a second bootstrap cannot
//! read the password back. The plaintext lives where the auth token does: in
//! `credentials.json` (`tern up`) or in the file given to `tern admin bootstrap
//! --credentials FILE`. Bootstrap therefore:
//!
//! 1. keeps the login an earlier credentials file names, if that file is for this account
//!    and its password still verifies against the stored hash (so `tern up` restarts and
//!    repeated `tern admin bootstrap --credentials FILE` runs print the same values);
//! 2. otherwise, if the account already has the login bootstrap made (its friendly name is
//!    [`BOOTSTRAP_SMPP_NAME`]), rotates it: same `system_id`, a new password, and a
//!    warning in the log. This is what `tern admin bootstrap` without `--credentials`
//!    does on a second run; binds with the old password fail from then on;
//! 3. otherwise creates a login with a generated `system_id` and password (the first run,
//!    or a store made before SMPP credentials existed).
//!
//! Logins made through the API or `smpp-credential create` are never touched.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tern_api::credentials::{
    generate_password, generate_system_id, hash_password, validate_password, validate_system_id,
    verify_password,
};
use tern_node::now_ms;
use tern_store::{Account, AccountStatus, SmppCredential, Store, StoreError};
use tern_types::time::{from_millis, iso8601};
use tern_types::{Sid, SidPrefix};

use crate::node::{self, Credentials};

/// The friendly name of the SMPP login bootstrap creates, by which a later bootstrap
/// finds it to rotate.
pub const BOOTSTRAP_SMPP_NAME: &str = "Tern bootstrap SMPP login";
/// Generated `system_id`s to try before giving up (a collision is ~2^-41 per try).
const GENERATE_ATTEMPTS: usize = 5;

#[derive(clap::Subcommand)]
pub enum AdminCommand {
    /// Create the first account (two phone numbers, an SMPP login) if the store has none, and
    /// print its credentials as JSON.
    ///
    /// Running it again prints the same account. The SMPP password is stored hashed, so it
    /// stays the same only when --credentials names the file of an earlier run; otherwise the
    /// bootstrap login keeps its system_id and gets a new password.
    Bootstrap(BootstrapArgs),
    /// Manage the SMPP logins (system_id and password) customers bind with.
    #[command(subcommand)]
    SmppCredential(SmppCredentialCommand),
}

#[derive(clap::Args)]
pub struct BootstrapArgs {
    #[arg(long)]
    config: PathBuf,
    /// The API base URL to print in the credentials.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api_base_url: String,
    /// A credentials file: read first, if it exists, to keep the SMPP password it holds;
    /// then written (mode 0600) with what is printed.
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
}

/// Where the store is: a config's `[store] url`, or a `tern up` data directory.
#[derive(clap::Args)]
pub struct StoreArgs {
    /// A node config whose `[store] url` names the store (sqlite://PATH or postgres://…).
    #[arg(long, value_name = "FILE", required_unless_present = "data_dir")]
    config: Option<PathBuf>,
    /// The data directory of `tern up` (its tern.db), when the config names no store.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The account (AC…); the store's first account if left out.
    #[arg(long, value_name = "AC…")]
    account: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum SmppCredentialCommand {
    /// Create a login and print it as JSON, with the password: the only time it is shown.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// 1 to 15 printable ASCII characters without spaces; generated if left out.
        #[arg(long, value_name = "ID")]
        system_id: Option<String>,
        /// 1 to 8 printable ASCII characters; 8 random letters and digits if left out.
        #[arg(long, value_name = "PW")]
        password: Option<String>,
        /// A name for people reading the list.
        #[arg(long, value_name = "N", default_value = "")]
        friendly_name: String,
    },
    /// Print the account's logins as a JSON array, oldest first (no passwords).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a login: binds with it fail from then on.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The credential's SID (SC…).
        #[arg(long, value_name = "SC…")]
        sid: String,
    },
}

pub async fn run(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Bootstrap(args) => bootstrap(args).await,
        AdminCommand::SmppCredential(cmd) => smpp_credential(cmd).await,
    }
}

async fn bootstrap(args: BootstrapArgs) -> anyhow::Result<()> {
    let config = node::load_config(Some(&args.config))?;
    let previous = match &args.credentials {
        Some(path) if path.exists() => Some(read_credentials(path)?),
        _ => None,
    };
    let backend = node::open_store(&config, None).await?;
    let result = node::bootstrap(&*backend.store(), previous.as_ref()).await;
    backend.close();
    let (account, numbers, smpp) = result?;
    let creds = Credentials {
        account_sid: account.sid.to_string(),
        auth_token: account.auth_token,
        api_base_url: args.api_base_url,
        phone_numbers: numbers,
        smpp_system_id: smpp.system_id,
        smpp_password: smpp.password,
        smpp_address: String::new(),
        operator_token: None,
    };
    if let Some(path) = &args.credentials {
        write_credentials(path, &creds)?;
    }
    println!("{}", serde_json::to_string_pretty(&creds)?);
    Ok(())
}

async fn smpp_credential(cmd: SmppCredentialCommand) -> anyhow::Result<()> {
    let (store_args, action) = match cmd {
        SmppCredentialCommand::Create {
            store,
            system_id,
            password,
            friendly_name,
        } => (
            store,
            Action::Create {
                system_id,
                password,
                friendly_name,
            },
        ),
        SmppCredentialCommand::List { store } => (store, Action::List),
        SmppCredentialCommand::Revoke { store, sid } => {
            let sid = Sid::parse_as(&sid, SidPrefix::SmppCredential).map_err(|_| {
                anyhow::anyhow!(
                    "--sid must be an SMPP credential SID (SC and 32 hex digits), not {sid:?}"
                )
            })?;
            (store, Action::Revoke { sid })
        }
    };
    // Check what needs no store first, so a typo fails fast.
    if let Action::Create {
        system_id,
        password,
        ..
    } = &action
    {
        if let Some(id) = system_id {
            validate_system_id(id).map_err(|e| anyhow::anyhow!("--system-id is invalid: {e}"))?;
        }
        if let Some(pw) = password {
            validate_password(pw).map_err(|e| anyhow::anyhow!("--password is invalid: {e}"))?;
        }
    }
    let config = node::load_config(store_args.config.as_deref())?;
    let default_sqlite = store_args.data_dir.as_ref().map(|d| d.join("tern.db"));
    if let Some(path) = &default_sqlite
        && config.store.url.is_none()
        && !path.exists()
    {
        bail!(
            "there is no Tern store at {} (is --data-dir the directory `tern up` uses?)",
            path.display()
        );
    }
    let backend = node::open_store(&config, default_sqlite.as_deref()).await?;
    let store = backend.store();
    let result = async {
        let account = resolve_account(&*store, store_args.account.as_deref()).await?;
        match action {
            Action::Create {
                system_id,
                password,
                friendly_name,
            } => {
                let password = password.unwrap_or_else(generate_password);
                let c =
                    create_credential(&*store, account.sid, system_id, &password, friendly_name)
                        .await?;
                eprintln!("The password is shown only now: the store keeps a hash of it.");
                Ok(credential_json(&c, Some(&password)))
            }
            Action::List => {
                let all = store.smpp_credentials(account.sid).await?;
                Ok(Value::Array(
                    all.iter().map(|c| credential_json(c, None)).collect(),
                ))
            }
            Action::Revoke { sid } => {
                let found = store
                    .smpp_credentials(account.sid)
                    .await?
                    .into_iter()
                    .find(|c| c.sid == sid);
                let Some(c) = found else {
                    bail!("account {} has no SMPP credential {sid}", account.sid);
                };
                if !store.delete_smpp_credential(account.sid, sid).await? {
                    bail!("SMPP credential {sid} was deleted by someone else meanwhile");
                }
                Ok(json!({"revoked": credential_json(&c, None)}))
            }
        }
    }
    .await;
    backend.close();
    println!("{}", serde_json::to_string_pretty(&result?)?);
    Ok(())
}

enum Action {
    Create {
        system_id: Option<String>,
        password: Option<String>,
        friendly_name: String,
    },
    List,
    Revoke {
        sid: Sid,
    },
}

/// `--account`, or the store's first account.
async fn resolve_account(store: &dyn Store, account: Option<&str>) -> anyhow::Result<Account> {
    let a = match account {
        Some(raw) => {
            let sid = Sid::parse_as(raw, SidPrefix::Account).map_err(|_| {
                anyhow::anyhow!("--account must be an account SID (AC and 32 hex digits), not {raw:?}")
            })?;
            store
                .account(sid)
                .await?
                .with_context(|| format!("there is no account {sid} in this store"))?
        }
        None => store.first_account().await?.context(
            "the store has no account yet: run `tern admin bootstrap` (or `tern up`) first, or pass --account",
        )?,
    };
    if a.status == AccountStatus::Closed {
        bail!("account {} is closed", a.sid);
    }
    Ok(a)
}

/// The JSON the CLI prints: the API's fields without `url`, and `password` only when
/// given.
fn credential_json(c: &SmppCredential, password: Option<&str>) -> Value {
    let mut v = json!({
        "sid": c.sid,
        "account_sid": c.account_sid,
        "system_id": c.system_id,
        "friendly_name": c.friendly_name,
        "date_created": iso8601(from_millis(c.created)),
    });
    if let (Some(p), Some(obj)) = (password, v.as_object_mut()) {
        obj.insert("password".into(), json!(p));
    }
    v
}

/// Stores a new SMPP login of `account` with `password` hashed; `system_id` is generated
/// when `None` (another is tried if a generated one is taken). A taken `system_id` that
/// was asked for is an error naming its holder.
pub async fn create_credential(
    store: &dyn Store,
    account: Sid,
    system_id: Option<String>,
    password: &str,
    friendly_name: String,
) -> anyhow::Result<SmppCredential> {
    let pw = password.to_string();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .context("hashing the SMPP password")?;
    let attempts = if system_id.is_some() {
        1
    } else {
        GENERATE_ATTEMPTS
    };
    for _ in 0..attempts {
        let c = SmppCredential {
            sid: Sid::generate(SidPrefix::SmppCredential),
            account_sid: account,
            system_id: system_id.clone().unwrap_or_else(generate_system_id),
            password_hash: password_hash.clone(),
            friendly_name: friendly_name.clone(),
            created: now_ms(),
        };
        match store.create_smpp_credential(c.clone()).await {
            Ok(()) => return Ok(c),
            Err(StoreError::Conflict(_)) if system_id.is_none() => continue,
            Err(StoreError::Conflict(_)) => {
                let holder = store
                    .smpp_credential_by_system_id(&c.system_id)
                    .await
                    .ok()
                    .flatten()
                    .map(|h| format!(" by account {}", h.account_sid))
                    .unwrap_or_default();
                bail!("system_id {:?} is already in use{holder}", c.system_id);
            }
            Err(e) => return Err(e).context("cannot store the SMPP credential"),
        }
    }
    bail!("{GENERATE_ATTEMPTS} generated system_ids in a row were taken; try again")
}

/// An SMPP login with its plaintext password, as bootstrap hands it out.
#[derive(Debug, Clone, PartialEq)]
pub struct SmppLogin {
    pub system_id: String,
    pub password: String,
}

/// The SMPP login bootstrap reports for `account`: see the module documentation.
pub async fn bootstrap_smpp_login(
    store: &dyn Store,
    account: Sid,
    previous: Option<&Credentials>,
) -> anyhow::Result<SmppLogin> {
    if let Some(prev) = previous.filter(|p| {
        p.account_sid == account.as_str()
            && !p.smpp_system_id.is_empty()
            && !p.smpp_password.is_empty()
    }) && let Some(c) = store
        .smpp_credential_by_system_id(&prev.smpp_system_id)
        .await?
        .filter(|c| c.account_sid == account)
    {
        let (password, hash) = (prev.smpp_password.clone(), c.password_hash);
        let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .context("verifying the SMPP password")?;
        if matches {
            return Ok(SmppLogin {
                system_id: prev.smpp_system_id.clone(),
                password: prev.smpp_password.clone(),
            });
        }
    }
    let password = generate_password();
    let ours = store
        .smpp_credentials(account)
        .await?
        .into_iter()
        .find(|c| c.friendly_name == BOOTSTRAP_SMPP_NAME);
    let system_id = match ours {
        Some(old) => {
            tracing::warn!(
                system_id = %old.system_id,
                "no credentials file holds the bootstrap SMPP login's password (the store keeps \
                 only its hash): rotating it; binds with the old password will fail"
            );
            store.delete_smpp_credential(account, old.sid).await?;
            Some(old.system_id)
        }
        None => None,
    };
    let c = create_credential(
        store,
        account,
        system_id,
        &password,
        BOOTSTRAP_SMPP_NAME.into(),
    )
    .await?;
    Ok(SmppLogin {
        system_id: c.system_id,
        password,
    })
}

/// A credentials file written by `tern up` or `tern admin bootstrap`.
pub fn read_credentials(path: &Path) -> anyhow::Result<Credentials> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the credentials file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a Tern credentials file", path.display()))
}

/// Writes `creds` to `path` atomically, readable by the owner only.
pub fn write_credentials(path: &Path, creds: &Credentials) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(creds)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tern_store::sqlite::SqliteStore;

    use super::*;

    fn creds(account: &Account, login: &SmppLogin) -> Credentials {
        Credentials {
            account_sid: account.sid.to_string(),
            auth_token: account.auth_token.clone(),
            api_base_url: "http://x".into(),
            phone_numbers: vec![],
            smpp_system_id: login.system_id.clone(),
            smpp_password: login.password.clone(),
            smpp_address: String::new(),
            operator_token: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bootstrap_keeps_a_verified_login_and_rotates_an_unknown_one() {
        let dir = tempfile_dir();
        let store = Arc::new(SqliteStore::open(&dir.join("tern.db")).unwrap());
        let (account, numbers, first) = node::bootstrap(&*store, None).await.unwrap();
        assert_eq!(numbers.len(), 2);
        assert_eq!(validate_system_id(&first.system_id), Ok(()));
        assert_eq!(validate_password(&first.password), Ok(()));
        let stored = store
            .smpp_credential_by_system_id(&first.system_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.account_sid, account.sid);
        assert!(verify_password(&first.password, &stored.password_hash));

        // With the file: the same values, nothing written.
        let file = creds(&account, &first);
        let (again, _, second) = node::bootstrap(&*store, Some(&file)).await.unwrap();
        assert_eq!(again.sid, account.sid);
        assert_eq!(second, first);
        assert_eq!(
            store.smpp_credentials(account.sid).await.unwrap(),
            vec![stored]
        );

        // Without it (or with a wrong password): same system_id, a new password.
        let (_, _, rotated) = node::bootstrap(&*store, None).await.unwrap();
        assert_eq!(rotated.system_id, first.system_id);
        assert_ne!(rotated.password, first.password);
        let wrong = Credentials {
            smpp_password: "nope".into(),
            ..creds(&account, &rotated)
        };
        let (_, _, rotated2) = node::bootstrap(&*store, Some(&wrong)).await.unwrap();
        assert_eq!(rotated2.system_id, first.system_id);
        let all = store.smpp_credentials(account.sid).await.unwrap();
        assert_eq!(all.len(), 1);
        assert!(verify_password(&rotated2.password, &all[0].password_hash));
        assert!(!verify_password(&first.password, &all[0].password_hash));

        // Other logins of the account are left alone; a deleted bootstrap login comes back.
        let mine = create_credential(
            &*store,
            account.sid,
            Some("custom".into()),
            "pw",
            "mine".into(),
        )
        .await
        .unwrap();
        assert!(
            store
                .delete_smpp_credential(account.sid, all[0].sid)
                .await
                .unwrap()
        );
        let (_, _, fresh) = node::bootstrap(&*store, Some(&creds(&account, &rotated2)))
            .await
            .unwrap();
        assert_ne!(fresh.system_id, first.system_id);
        let all = store.smpp_credentials(account.sid).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], mine);

        // A file of another account is ignored.
        let other = Credentials {
            account_sid: Sid::generate(SidPrefix::Account).to_string(),
            ..creds(&account, &fresh)
        };
        let (_, _, after) = node::bootstrap(&*store, Some(&other)).await.unwrap();
        assert_eq!(after.system_id, fresh.system_id);
        assert_ne!(after.password, fresh.password);
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_taken_system_id_names_its_holder() {
        let dir = tempfile_dir();
        let store = Arc::new(SqliteStore::open(&dir.join("tern.db")).unwrap());
        let (account, _, _) = node::bootstrap(&*store, None).await.unwrap();
        create_credential(
            &*store,
            account.sid,
            Some("dup".into()),
            "pw",
            String::new(),
        )
        .await
        .unwrap();
        let e = create_credential(
            &*store,
            account.sid,
            Some("dup".into()),
            "pw",
            String::new(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"dup\" is already in use by account"), "{e}");
        assert!(e.contains(account.sid.as_str()), "{e}");
        store.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn credentials_files_round_trip_and_old_ones_still_parse() {
        let dir = tempfile_dir();
        let path = dir.join("credentials.json");
        let c = Credentials {
            account_sid: "AC1".into(),
            auth_token: "t".into(),
            api_base_url: "http://x".into(),
            phone_numbers: vec!["+14155550100".into()],
            smpp_system_id: "tern12345678".into(),
            smpp_password: "abcdEFG1".into(),
            smpp_address: "127.0.0.1:2775".into(),
            operator_token: Some("op".into()),
        };
        write_credentials(&path, &c).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = read_credentials(&path).unwrap();
        assert_eq!(back.smpp_system_id, c.smpp_system_id);
        assert_eq!(back.smpp_password, c.smpp_password);
        // A file written before SMPP logins existed.
        std::fs::write(
            &path,
            r#"{"account_sid":"AC1","auth_token":"t","api_base_url":"u","phone_numbers":[]}"#,
        )
        .unwrap();
        let old = read_credentials(&path).unwrap();
        assert!(old.smpp_system_id.is_empty() && old.smpp_password.is_empty());
        std::fs::write(&path, "not json").unwrap();
        let e = format!("{:#}", read_credentials(&path).unwrap_err());
        assert!(e.contains("is not a Tern credentials file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh directory under the system's temp dir (the crate has no tempfile dependency).
    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tern-admin-test-{}",
            Sid::generate(SidPrefix::Account)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
