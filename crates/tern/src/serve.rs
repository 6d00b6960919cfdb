//! `tern serve`: a production node on the store and bus its config names, and
//! `tern admin bootstrap`, which creates the first account of such a deployment.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::node::{self, Credentials};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The node's TOML configuration: `[node]`, `[store]`, `[bus]`, `[sim]`, `[webhooks]`…
    #[arg(long)]
    config: PathBuf,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the SMPP server for customers (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:2775")]
    smpp_listen: SocketAddr,
}

#[derive(clap::Subcommand)]
pub enum AdminCommand {
    /// Create the first account (with two phone numbers) if the store has none, and print
    /// its credentials as JSON. Running it again prints the same account.
    Bootstrap(BootstrapArgs),
}

#[derive(clap::Args)]
pub struct BootstrapArgs {
    #[arg(long)]
    config: PathBuf,
    /// The API base URL to print in the credentials.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api_base_url: String,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = node::load_config(Some(&args.config))?;
    let metrics = node::install_metrics()?;
    let backend = node::open_store(&config, None).await?;
    let queue = node::open_queue(&config).await?;
    let listener = node::listen(args.listen).await?;
    let smpp = node::listen(args.smpp_listen).await?;
    tracing::info!(
        node = %config.node.name,
        region = %config.node.region,
        addr = %listener.local_addr()?,
        smpp = %smpp.local_addr()?,
        "tern serve is up"
    );
    let listeners = node::Listeners {
        http: listener,
        smpp,
    };
    node::run(config, backend, queue, listeners, metrics).await
}

pub async fn admin(cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Bootstrap(args) => {
            let config = node::load_config(Some(&args.config))?;
            let backend = node::open_store(&config, None).await?;
            let (account, numbers) = node::bootstrap(&*backend.store()).await?;
            let creds = Credentials {
                account_sid: account.sid.to_string(),
                auth_token: account.auth_token,
                api_base_url: args.api_base_url,
                phone_numbers: numbers,
            };
            println!("{}", serde_json::to_string_pretty(&creds)?);
            backend.close();
            Ok(())
        }
    }
}
