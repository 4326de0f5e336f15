//! Commands that talk to an OCI registry: pull, push; and history, which shows what the
//! image's config says about its layers.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use anyhow::Context;
use strata_layer_store::{Part, PartEnd, Progress};
use strata_registry::{
    Auth, Connection, Credentials, LayerFetch, Platform, PullOptions, PushOptions, blocking,
};

use crate::global::{Access, Global};

/// Registry credentials and transport, shared by pull and push.
#[derive(Debug, clap::Args)]
pub struct RegistryArgs {
    /// Speak plain HTTP to the registry (a registry on localhost, 127.0.0.0/8 or ::1 gets
    /// plain HTTP without it).
    #[arg(long)]
    insecure: bool,
    /// User name for basic authentication (password from STRATA_REGISTRY_PASSWORD or
    /// --password-stdin).
    #[arg(long, env = "STRATA_REGISTRY_USER")]
    username: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// A bearer token (instead of a user name).
    #[arg(
        long,
        env = "STRATA_REGISTRY_TOKEN",
        conflicts_with = "username",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Layers transferred at once.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
}

impl RegistryArgs {
    pub(super) fn connection(&self) -> anyhow::Result<Connection> {
        let auth = match (&self.username, &self.token) {
            (Some(username), _) => Auth::Basic {
                username: username.clone(),
                password: password(username, self.password_stdin)?,
            },
            (None, Some(token)) => Auth::Bearer {
                token: token.clone(),
            },
            (None, None) => Auth::Anonymous,
        };
        // Without credentials given, those `strata login` (or `docker login`) stored.
        Ok(Connection::default()
            .with_auth(auth)
            .with_insecure(self.insecure)
            .with_credentials(Credentials::docker()))
    }
}

/// `username`'s password: the first line of standard input with `stdin`, else
/// `STRATA_REGISTRY_PASSWORD`.
pub(super) fn password(username: &str, stdin: bool) -> anyhow::Result<String> {
    if stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    std::env::var("STRATA_REGISTRY_PASSWORD").with_context(|| {
        format!("no password for {username}: set STRATA_REGISTRY_PASSWORD or pass --password-stdin")
    })
}

/// The commands of this group.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Pull an image from a registry, fetching only the layers the store lacks.
    Pull {
        /// `registry/repository[:tag][@digest]`.
        reference: String,
        /// Platform to choose from an index: os/arch[/variant] [default: this machine's].
        #[arg(long)]
        platform: Option<String>,
        /// Tag the image with this name instead of the reference.
        #[arg(long)]
        name: Option<String>,
        /// Also materialize its layers now, so that the first container (or containerd's
        /// pull through `strata serve`) does not wait for them.
        #[arg(long)]
        materialize: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Push an image to a registry, uploading only the blobs it lacks.
    Push {
        /// Image tag or id.
        image: String,
        /// `registry/repository[:tag]`.
        reference: String,
        /// Mount blobs the registry lacks here from this repository of the same registry.
        #[arg(long)]
        mount_from: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// One progress bar per layer, on a terminal.
struct Bars {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<Vec<(usize, indicatif::ProgressBar)>>,
}

impl Bars {
    fn bar(&self, index: usize) -> Option<indicatif::ProgressBar> {
        let bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        bars.iter()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b.clone())
    }
}

impl Progress for Bars {
    fn part_started(&self, part: &Part<'_>) {
        let (index, size, resumed) = (part.index, part.size, part.done);
        let digest = part.name.strip_prefix("sha256:").unwrap_or(part.name);
        let bar = self.multi.add(indicatif::ProgressBar::new(size));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(digest.chars().take(12).collect::<String>());
        if resumed > 0 {
            bar.set_message(format!("(resuming at {resumed})"));
        }
        self.bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((index, bar));
    }

    fn advance(&self, index: usize, bytes: u64) {
        if let Some(bar) = self.bar(index) {
            bar.inc(bytes);
        }
    }

    fn part_finished(&self, index: usize, _end: PartEnd) {
        if let Some(bar) = self.bar(index) {
            bar.finish_with_message("done");
        }
    }
}

impl Command {
    pub fn run(self, global: &Global) -> anyhow::Result<()> {
        let access = match self {
            Command::Pull { .. } => Access::Create,
            _ => Access::Read,
        };
        let store = Arc::new(global.open_store(access)?);
        // Blocking calls: the command has nothing else to do meanwhile.
        let client = blocking::Client::new(store.clone());
        match self {
            Command::Pull {
                reference,
                platform,
                name,
                materialize,
                registry,
            } => {
                let platform = platform.map(|p| p.parse::<Platform>()).transpose()?;
                let bars = (std::io::stderr().is_terminal() && !global.json).then(|| {
                    Arc::new(Bars {
                        multi: indicatif::MultiProgress::new(),
                        bars: std::sync::Mutex::new(Vec::new()),
                    })
                });
                // A killed pull leaves its partial downloads on disk all the same: no cancel.
                let options = PullOptions::default()
                    .with_connection(registry.connection()?)
                    .with_platform(platform)
                    .with_jobs(registry.jobs)
                    .with_name(name)
                    .with_progress(bars.map(|b| b as Arc<dyn Progress>));
                let report = client
                    .pull(&reference, &options)
                    .with_context(|| format!("pulling {reference}"))?;
                if materialize {
                    let layers: Vec<String> = store
                        .image(&report.image)?
                        .layers
                        .iter()
                        .map(|d| d.hex())
                        .collect();
                    store
                        .materialize_layers(&layers, None)
                        .with_context(|| format!("materializing the layers of {reference}"))?;
                }
                global.emit(&report, || {
                    let fetched = report
                        .layers
                        .iter()
                        .filter(|l| l.fetch == LayerFetch::Fetched)
                        .count();
                    format!(
                        "{} sha256:{}\n{} layers, {fetched} fetched: {} bytes downloaded, {} resumed from disk, {} already in the store; {} objects new, {} deduplicated",
                        report.tags.first().map(String::as_str).unwrap_or(&reference),
                        report.image,
                        report.layers.len(),
                        report.bytes_fetched,
                        report.bytes_resumed,
                        report.bytes_present,
                        report.objects_new,
                        report.objects_existing,
                    )
                })
            }
            Command::Push {
                image,
                reference,
                mount_from,
                registry,
            } => {
                let options = PushOptions::default()
                    .with_connection(registry.connection()?)
                    .with_jobs(registry.jobs)
                    .with_mount_from(mount_from)
                    .with_progress(
                        super::store::Bar::on_terminal(global)
                            .map(|b| Arc::new(b) as Arc<dyn Progress>),
                    );
                let report = client
                    .push(&image, &reference, &options)
                    .with_context(|| format!("pushing {image} to {reference}"))?;
                global.emit(&report, || {
                    let mut text = format!("{} {}", report.reference, report.manifest);
                    for blob in &report.blobs {
                        text.push_str(&format!(
                            "\n  {} {:>12} {:?}",
                            blob.digest, blob.size, blob.outcome
                        ));
                    }
                    text.push_str(&format!("\n{} bytes uploaded", report.bytes_uploaded));
                    text
                })
            }
        }
    }
}
