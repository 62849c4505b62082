//! rkt's command line, defined once. Global flags are accepted before or after the subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::options::{parse_duration, InsecureOptions};

#[derive(Parser, Debug)]
#[command(name = "rkt", version, about = "rkt, the App Container runtime", propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// A Go-style boolean flag: `--flag`, `--flag=true` and `--flag=false` all work.
macro_rules! go_bool {
    () => {
        "false"
    };
}

#[derive(Args, Debug, Clone)]
pub struct GlobalFlags {
    /// rkt data directory (default: `data` of paths.d, else /var/lib/rkt)
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
    /// system configuration directory
    #[arg(long, global = true, default_value = "/usr/lib/rkt")]
    pub system_config: PathBuf,
    /// local configuration directory
    #[arg(long, global = true, default_value = "/etc/rkt")]
    pub local_config: PathBuf,
    /// user configuration directory
    #[arg(long, global = true, default_value = "")]
    pub user_config: String,
    /// comma-separated list of security features to disable: none, image, tls, ondisk, http,
    /// pubkey, capabilities, paths, seccomp, all-fetch, all-run, all
    #[arg(long, global = true, default_value = "none", value_parser = InsecureOptions::parse)]
    pub insecure_options: InsecureOptions,
    /// print out more debug information to stderr
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub debug: bool,
    /// no download progress on stderr (bars on a terminal, a line per download otherwise)
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub quiet: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fetch image(s) and store them in the local store
    Fetch(FetchArgs),
    /// Operate on image(s) in the local store
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Run image(s) in a pod: rkt run IMAGE [per-app flags] [-- args ---] …
    #[command(disable_help_flag = true, override_help = crate::run_args::RUN_HELP)]
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Prepare a pod to run later with run-prepared; prints its UUID
    #[command(disable_help_flag = true, override_help = crate::run_args::PREPARE_HELP)]
    Prepare {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
    /// Run a prepared pod
    RunPrepared(RunPreparedArgs),
    /// Check the status of a pod
    Status {
        uuid: Option<String>,
        /// wait for the pod to exit
        #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
        wait: bool,
        /// output format: json or json-pretty
        #[arg(long, value_parser = ["json", "json-pretty"])]
        format: Option<String>,
        /// read the pod UUID from this file
        #[arg(long)]
        uuid_file: Option<PathBuf>,
    },
    /// List pods
    List {
        /// use long output format
        #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
        full: bool,
        /// suppress a legend with the list
        #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
        no_legend: bool,
        /// output format: json or json-pretty
        #[arg(long, value_parser = ["json", "json-pretty"])]
        format: Option<String>,
    },
    /// Remove all files and resources of exited pods
    Rm {
        uuids: Vec<String>,
        /// read the pod UUID from this file
        #[arg(long)]
        uuid_file: Option<PathBuf>,
    },
    /// Garbage collect pods that have exited
    Gc {
        /// duration to wait after a pod is marked before it is removed
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        grace_period: std::time::Duration,
        /// duration after which prepared pods are removed
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        expire_prepared: std::time::Duration,
        /// only move exited pods to the garbage directory
        #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
        mark_only: bool,
    },
    /// Print the pod manifest of a pod
    CatManifest {
        uuid: Option<String>,
        /// apply indent to format the output
        #[arg(long, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
        pretty_print: bool,
        /// read the pod UUID from this file
        #[arg(long)]
        uuid_file: Option<PathBuf>,
    },
    /// Stop running pods
    Stop {
        uuids: Vec<String>,
        /// kill the pods (SIGKILL) instead of asking them to stop (SIGTERM)
        #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
        force: bool,
        /// read the pod UUID from this file
        #[arg(long)]
        uuid_file: Option<PathBuf>,
    },
    /// Run a command in an app of a running pod
    Enter {
        /// the app to enter (needed when the pod has several)
        #[arg(long)]
        app: Option<String>,
        uuid: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        command: Vec<String>,
    },
    /// Trust a key for verifying images: rkt trust [--prefix PREFIX | --root] [KEY…]
    Trust(TrustArgs),
    /// Print the version and exit
    Version,
    /// Print configuration for each stage in JSON format
    Config {
        /// apply indent to format the output
        #[arg(long, num_args = 0..=1, require_equals = true, default_value = "true", default_missing_value = "true")]
        pretty_print: bool,
    },
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// images to fetch: ACI files or URLs, names (appc discovery), image IDs,
    /// docker://[REGISTRY/]NAME[:TAG|@DIGEST], docker-archive:PATH[:NAME:TAG], oci:PATH[:REF],
    /// oci-archive:PATH[:REF]
    #[arg(required = true)]
    pub images: Vec<String>,
    /// local signature file to use in validating the preceding image
    #[arg(long)]
    pub signature: Vec<PathBuf>,
    /// print the full image hash after fetching
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub full: bool,
    /// when to fetch an image: never, new or update
    #[arg(long, default_value = "update", value_parser = ["never", "new", "update"])]
    pub pull_policy: String,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// List images in the local store
    List(ListArgs),
    /// Remove one or more images with the given IDs or names from the local store
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Garbage collect local store
    Gc {
        /// duration to wait since an image was last used before removing it
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        grace_period: std::time::Duration,
    },
    /// Export a stored image to an ACI file
    Export {
        image: String,
        output: PathBuf,
        /// overwrite output ACI
        #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
        overwrite: bool,
    },
    /// Extract a stored image to a directory
    Extract(ExtractArgs),
    /// Render a stored image, with its dependencies, to a directory
    Render(ExtractArgs),
    /// Inspect and print the image manifest
    CatManifest {
        image: String,
        /// apply indent to format the output
        #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
        pretty_print: bool,
    },
    /// Re-hash images and their rendered trees, repairing trees; without images, all of them,
    /// rebuilding the index from the blobs
    Verify { images: Vec<String> },
    /// Fetch image(s) and store them in the local store
    #[command(hide = true)]
    Fetch(FetchArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// comma-separated list of fields to display: id, name, size, importtime, lastused
    #[arg(long, default_value = "id,name,size,importtime,lastused")]
    pub fields: String,
    /// sort the output by these comma-separated fields: name, importtime, lastused, size
    #[arg(long, default_value = "importtime")]
    pub sort: String,
    /// sort order: asc or desc
    #[arg(long, default_value = "asc", value_parser = ["asc", "desc"])]
    pub order: String,
    /// use long output format
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub full: bool,
    /// suppress a legend with the list
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub no_legend: bool,
    /// choose the output format: json, json-pretty (default: a table)
    #[arg(long, value_parser = ["json", "json-pretty"])]
    pub format: Option<String>,
    /// also list the layers of Docker images, each stored as an image the one above depends
    /// on (without it, an image's size counts the layers it is made of)
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct ExtractArgs {
    pub image: String,
    pub output: PathBuf,
    /// extract only the root filesystem, without the manifest
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub rootfs_only: bool,
    /// replace the output directory if it exists
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub overwrite: bool,
}

#[derive(Args, Debug)]
pub struct RunPreparedArgs {
    pub uuid: String,
    /// network: host, none or default
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = "default", default_missing_value = "default")]
    pub net: String,
    /// DNS servers for the pod's /etc/resolv.conf (host, none, or addresses)
    #[arg(long, value_delimiter = ',')]
    pub dns: Vec<String>,
    /// DNS search domains
    #[arg(long, value_delimiter = ',')]
    pub dns_search: Vec<String>,
    /// IP=HOSTNAME entries for /etc/hosts, or "host" for the host's
    #[arg(long)]
    pub hosts_entry: Vec<String>,
    /// the pod's hostname (default: rkt-UUID)
    #[arg(long)]
    pub hostname: Option<String>,
    /// attach stdin and the terminal to the app
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub interactive: bool,
}

#[derive(Args, Debug)]
pub struct TrustArgs {
    /// the image name prefix the key is trusted for
    #[arg(long)]
    pub prefix: Option<String>,
    /// trust the key for every image
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub root: bool,
    /// accept the key without asking
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub skip_fingerprint_review: bool,
    /// allow fetching keys over plain http
    #[arg(long, num_args = 0..=1, require_equals = true, default_value = go_bool!(), default_missing_value = "true")]
    pub insecure_allow_http: bool,
    /// key files or https URLs; without any, the prefix's keys are discovered
    pub keys: Vec<String>,
}
