//! `tern sim smsc`: run the carrier simulator (an SMPP server with fault injection) until
//! SIGINT/SIGTERM, printing a stats line every 5 s.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tern_smsc_sim::{DelayMs, DeliveryRule, MessageIdFormat, Smsc, SmscConfig, UniformMs};

#[derive(clap::Subcommand)]
pub enum SimCommand {
    /// A simulated carrier SMSC: SMPP 3.4 server with receipts, MO injection and faults
    /// switchable at run time through the admin port (GET/PUT /faults, GET /stats, POST /mo).
    Smsc(SmscArgs),
}

#[derive(clap::Args)]
pub struct SmscArgs {
    /// SMPP listen address [default: 127.0.0.1:2775, or the config file's].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The system_id clients bind with (checked when a password is set).
    #[arg(long, value_name = "ID")]
    system_id: Option<String>,
    /// The bind password; without one every bind is accepted.
    #[arg(long, value_name = "PW")]
    password: Option<String>,
    /// Admin HTTP listen address (faults, stats, MO injection).
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// A TOML file of simulator settings (the fields of SmscConfig, faults under
    /// [faults]); flags override it.
    #[arg(long, value_name = "FILE.toml")]
    config: Option<PathBuf>,
    /// Message ids in submit_sm_resp: hex or decimal.
    #[arg(long, value_name = "FORMAT", value_parser = parse_id_format)]
    message_id_format: Option<MessageIdFormat>,
    /// Receipt delay in ms: N, or MIN-MAX for a uniform draw.
    #[arg(long, value_name = "N|MIN-MAX", value_parser = parse_delay)]
    receipt_delay_ms: Option<DelayMs>,
    /// Share of messages to destinations starting with PREFIX that are delivered (the rest
    /// get UNDELIV receipts); repeatable; an empty PREFIX matches every destination.
    #[arg(long, value_name = "PREFIX=RATIO", value_parser = parse_rule)]
    delivery_ratio: Vec<DeliveryRule>,
    /// Submits per second per bind above which ESME_RTHROTTLED is answered.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    throttle_mps: Option<u32>,
    /// Share of submits refused with --submit-error-status (0..1).
    #[arg(long, value_name = "F", value_parser = parse_ratio)]
    submit_error_ratio: Option<f64>,
    /// command_status of those refusals (decimal or 0x-hex) [default: 0x08 ESME_RSYSERR].
    #[arg(long, value_name = "STATUS", value_parser = parse_status)]
    submit_error_status: Option<u32>,
    /// Accept submits but never send receipts.
    #[arg(long)]
    silent: bool,
    /// Close every connection every N seconds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    drop_every_secs: Option<u64>,
    /// Delay of each submit response in ms: N, or MIN-MAX.
    #[arg(long, value_name = "N|MIN-MAX", value_parser = parse_delay)]
    response_delay_ms: Option<DelayMs>,
}

pub async fn run(cmd: SimCommand) -> anyhow::Result<()> {
    match cmd {
        SimCommand::Smsc(args) => smsc(args).await,
    }
}

fn config_from(args: SmscArgs) -> anyhow::Result<SmscConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            SmscConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => SmscConfig::default(),
    };
    set(&mut config.listen, args.listen);
    set(&mut config.system_id, args.system_id);
    set(&mut config.message_id_format, args.message_id_format);
    if args.password.is_some() {
        config.password = args.password;
    }
    if args.admin_listen.is_some() {
        config.admin_listen = args.admin_listen;
    }
    let f = &mut config.faults;
    set(&mut f.receipt_delay_ms, args.receipt_delay_ms);
    set(&mut f.response_delay_ms, args.response_delay_ms);
    set(&mut f.submit_error_ratio, args.submit_error_ratio);
    set(&mut f.submit_error_status, args.submit_error_status);
    if args.throttle_mps.is_some() {
        f.throttle_mps = args.throttle_mps;
    }
    if args.drop_every_secs.is_some() {
        f.drop_every_secs = args.drop_every_secs;
    }
    f.silent |= args.silent;
    for rule in args.delivery_ratio {
        f.rules.retain(|r| r.prefix != rule.prefix);
        f.rules.push(rule);
    }
    config.validate()?;
    Ok(config)
}

async fn smsc(args: SmscArgs) -> anyhow::Result<()> {
    let config = config_from(args)?;
    let open = config.password.is_none();
    let system_id = config.system_id.clone();
    let sim = Smsc::start(config).await?;
    println!("SMPP listening on {}", sim.addr());
    if open {
        println!("  binds: any system_id and password accepted");
    } else {
        println!("  binds: system_id {system_id:?} with the configured password");
    }
    if let Some(admin) = sim.admin_addr() {
        println!("admin HTTP on http://{admin} (GET/PUT /faults, GET /stats, POST /mo)");
    }
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    let mut last_submits = 0;
    let stop = crate::node::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = every.tick() => {
                let stats = sim.stats();
                let rate = stats.submits.saturating_sub(last_submits) as f64 / 5.0;
                last_submits = stats.submits;
                println!("{:.0} submits/s | {}", rate, stats.summary());
            }
            () = &mut stop => break,
        }
    }
    println!("stopping: unbinding clients");
    sim.shutdown().await;
    Ok(())
}

/// A flag given on the command line overrides the config file.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn parse_id_format(s: &str) -> Result<MessageIdFormat, String> {
    match s {
        "hex" => Ok(MessageIdFormat::Hex),
        "decimal" => Ok(MessageIdFormat::Decimal),
        _ => Err(format!("expected `hex` or `decimal`, not {s:?}")),
    }
}

fn parse_delay(s: &str) -> Result<DelayMs, String> {
    let number = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("expected milliseconds as N or MIN-MAX, not {s:?}"))
    };
    match s.split_once('-') {
        None => Ok(DelayMs::Fixed(number(s)?)),
        Some((min, max)) => {
            let (min, max) = (number(min)?, number(max)?);
            if min > max {
                return Err(format!("MIN ({min}) is greater than MAX ({max})"));
            }
            Ok(DelayMs::Uniform(UniformMs { min, max }))
        }
    }
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("expected a ratio between 0 and 1, not {s:?}")),
    }
}

fn parse_rule(s: &str) -> Result<DeliveryRule, String> {
    let (prefix, ratio) = s
        .split_once('=')
        .ok_or_else(|| format!("expected PREFIX=RATIO (e.g. +44=0.9), not {s:?}"))?;
    let prefix = prefix.trim();
    if !prefix
        .trim_start_matches('+')
        .bytes()
        .all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "the prefix {prefix:?} must be digits, optionally after +"
        ));
    }
    Ok(DeliveryRule {
        prefix: prefix.to_owned(),
        delivery_ratio: parse_ratio(ratio)?,
        stat: None,
        err: 1,
        submit_status: None,
    })
}

fn parse_status(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    match parsed {
        Ok(0) => Err("the status must not be 0 (ESME_ROK)".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!(
            "expected a command_status, decimal or 0x-hex, not {s:?}"
        )),
    }
}
