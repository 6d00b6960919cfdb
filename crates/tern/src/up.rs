//! `tern up`: one process, SQLite in the data directory, the in-process queue and the
//! simulated carrier. The first start creates an account with two numbers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::node::{self, Credentials};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where the database and credentials live.
    #[arg(long, default_value = "./tern-data")]
    data_dir: PathBuf,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the SMPP server for customers (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:2775")]
    smpp_listen: SocketAddr,
    /// A TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
}

fn write_credentials(dir: &Path, creds: &Credentials) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("credentials.json");
    let tmp = dir.join("credentials.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(creds)?)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let config = node::load_config(args.config.as_deref())?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let metrics = node::install_metrics()?;
    let backend = node::open_store(&config, Some(&args.data_dir.join("tern.db"))).await?;
    // The SMPP password is stored hashed: the previous credentials.json is where it is kept.
    let creds_path = args.data_dir.join("credentials.json");
    let previous = if creds_path.exists() {
        crate::admin::read_credentials(&creds_path)
            .inspect_err(|e| {
                tracing::warn!(error = %format!("{e:#}"), "the previous credentials.json is unreadable; writing a new one")
            })
            .ok()
    } else {
        None
    };
    let (account, numbers, login) = node::bootstrap(&*backend.store(), previous.as_ref()).await?;
    let listener = node::listen(args.listen).await?;
    let addr = listener.local_addr()?;
    let smpp = node::listen(args.smpp_listen).await?;
    let smpp_addr = smpp.local_addr()?;
    // The operator API is on for the laptop node unless the config names its own token;
    // the token stays the same across restarts of one data directory.
    let mut config = config;
    if config.operator.token.is_none() && config.operator.token_env.is_none() {
        let token = previous
            .as_ref()
            .and_then(|p| p.operator_token.clone())
            .unwrap_or_else(tern_api::new_auth_token);
        config.operator.token = Some(token);
    }
    let creds = Credentials {
        account_sid: account.sid.to_string(),
        auth_token: account.auth_token.clone(),
        api_base_url: format!("http://{addr}"),
        phone_numbers: numbers,
        smpp_system_id: login.system_id,
        smpp_password: login.password,
        smpp_address: smpp_addr.to_string(),
        operator_token: config.operator.token.clone(),
    };
    write_credentials(&args.data_dir, &creds)?;
    let queue = node::open_queue(&config).await?;

    println!("Tern is up on http://{addr}");
    println!("  account_sid   {}", creds.account_sid);
    println!("  auth_token    {}", creds.auth_token);
    println!("  phone numbers {}", creds.phone_numbers.join(", "));
    println!(
        "  smpp login    {} (password in credentials.json)",
        creds.smpp_system_id
    );
    println!(
        "  credentials   {}",
        args.data_dir.join("credentials.json").display()
    );
    println!("  smpp server   {smpp_addr}");
    println!("Point a Twilio SDK at it: client.api.base_url = \"http://{addr}\"");
    let listeners = node::Listeners {
        http: listener,
        smpp,
    };
    node::run(
        config,
        args.config.clone(),
        backend,
        queue,
        listeners,
        metrics,
    )
    .await
}
