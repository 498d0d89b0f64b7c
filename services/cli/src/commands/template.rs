//! `ferry template`: writes the empty spreadsheet template for a target type.
//!
//! Runs locally (no server). The 4.x template has a Namespace column; the 5.x template has
//! none and a Message Type column instead. Its About sheet documents every column.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry_core::TargetType;
use ferry_metadata::xlsx::template_file_name;
use serde_json::json;

use crate::output::{OutputFormat, print_json};

/// Flags of `ferry template`.
#[derive(Debug, clap::Args)]
pub struct TemplateArgs {
    /// Target cluster type: 4.x or 5.x.
    #[arg(long)]
    target: String,
    /// File to write, or a directory (existing, or ending in '/') to write
    /// ferry-template-<target>.xlsx into (default: that file here).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub async fn run(output: OutputFormat, args: TemplateArgs) -> anyhow::Result<ExitCode> {
    let target: TargetType = args
        .target
        .parse()
        .map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    let name = template_file_name(target);
    let path = match args.out {
        Some(p) if p.is_dir() || p.as_os_str().to_string_lossy().ends_with('/') => p.join(&name),
        Some(p) => p,
        None => PathBuf::from(&name),
    };
    let bytes = ferry_metadata::template(target)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    match output {
        OutputFormat::Json => print_json(&json!({
            "file": path.display().to_string(),
            "target": target.as_str(),
        }))?,
        OutputFormat::Table => println!("wrote the {target} template to {}", path.display()),
    }
    Ok(ExitCode::SUCCESS)
}
