//! `greenflow sink render` (what the Nix modules use) against `greenflow sink up`: for the same settings both must
//! give the same Caddy site layout and the same Grafana provisioning. Grafana is the stand-in from `grafana.rs`'s
//! approach: a small Python server, so that `sink up` writes Grafana's files.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Project, describe, fake_grafana};
use serde_json::Value;

/// A project whose Grafana is the stand-in; the folder holding it lives as long as the test process.
fn project_with_grafana(extra: &str) -> Project {
    let dir = tempfile::tempdir().unwrap();
    let binary = fake_grafana(dir.path());
    let project = Project::with_config(&format!("    binary: {}\n{extra}", binary.display()));
    std::mem::forget(dir);
    project
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// Caddy's JSON for a Caddyfile, with the owner's, the writer's and the reader's hashes in the variables the service
/// sets.
fn caddy_adapt(caddyfile: &Path, hashes: &Hashes) -> Value {
    let output = Command::new("caddy")
        .args(["adapt", "--adapter", "caddyfile", "--config"])
        .arg(caddyfile)
        .env("GREENFLOW_SINK_PASSWORD_HASH", &hashes.owner)
        .env("GREENFLOW_SINK_WRITER_PASSWORD_HASH", &hashes.writer)
        .env("GREENFLOW_SINK_READER_PASSWORD_HASH", &hashes.reader)
        .output()
        .expect("caddy is on PATH (scripts/install-deps installs it)");
    assert!(output.status.success(), "caddy adapt {} failed:\n{}", caddyfile.display(), describe(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The three bcrypt hashes of a Caddyfile written by `sink up`.
struct Hashes {
    owner: String,
    writer: String,
    reader: String,
}

/// The quoted bcrypt hashes in a Caddyfile written by `sink up`, in order: the write route names the writer first,
/// then the owner; the read route then names the reader.
fn password_hashes(caddyfile: &str) -> Hashes {
    let mut found: Vec<String> = Vec::new();
    let mut rest = caddyfile;
    while let Some(start) = rest.find("\"$2") {
        let len = rest[start + 1..].find('"').unwrap();
        let hash = rest[start + 1..start + 1 + len].to_owned();
        if !found.contains(&hash) {
            found.push(hash);
        }
        rest = &rest[start + 1 + len..];
    }
    assert_eq!(found.len(), 3, "the writer's, the owner's and the reader's hash:\n{caddyfile}");
    Hashes { writer: found[0].clone(), owner: found[1].clone(), reader: found[2].clone() }
}

#[test]
fn render_and_sink_up_give_the_same_caddy_layout_and_grafana_provisioning() {
    let project = project_with_grafana("");
    project.sink_up();
    let up = project.state_dir().join("sink");
    let up_caddyfile = read(&up.join("caddy/Caddyfile"));
    let up_grafana = up.join("grafana");
    // Copy what `sink up` wrote before stopping it: the comparison needs no running sink.
    let files = [
        "grafana.ini",
        "provisioning/datasources/greenflow.yaml",
        "provisioning/dashboards/greenflow.yaml",
        "dashboards/greenflow-experiment.json",
    ]
    .map(|file| (file, read(&up_grafana.join(file))));
    project.ok(&["sink", "down"]);

    let out = project.path().join("rendered");
    let listed = project.ok(&["sink", "render", "--out", out.to_str().unwrap()]);
    let out = out.canonicalize().unwrap();
    assert!(listed.lines().any(|line| line.ends_with("caddy/Caddyfile")), "{listed}");

    // Caddy: the same file but for the hash, which the service supplies at start through the environment.
    let rendered_caddyfile = read(&out.join("caddy/Caddyfile"));
    let hashes = password_hashes(&up_caddyfile);
    assert!(!rendered_caddyfile.contains("$2"), "no hash in the rendered Caddyfile:\n{rendered_caddyfile}");
    assert_eq!(
        rendered_caddyfile,
        up_caddyfile
            .replace(&format!("\"{}\"", hashes.owner), "\"{$GREENFLOW_SINK_PASSWORD_HASH}\"")
            .replace(&format!("\"{}\"", hashes.writer), "\"{$GREENFLOW_SINK_WRITER_PASSWORD_HASH}\"")
            .replace(&format!("\"{}\"", hashes.reader), "\"{$GREENFLOW_SINK_READER_PASSWORD_HASH}\""),
        "the rendered Caddyfile differs from sink up's"
    );
    let unused = Hashes { owner: "unused".into(), writer: "unused".into(), reader: "unused".into() };
    assert_eq!(
        caddy_adapt(&out.join("caddy/Caddyfile"), &hashes),
        caddy_adapt(&up.join("caddy/Caddyfile"), &unused),
        "Caddy reads the two Caddyfiles differently"
    );

    // Grafana: the same provisioning; paths differ only by the directory the files were written to.
    let rendered_grafana = out.join("grafana");
    for (file, up_text) in files {
        let rendered = read(&rendered_grafana.join(file));
        let normalised = rendered.replace(rendered_grafana.to_str().unwrap(), up_grafana.to_str().unwrap());
        assert_eq!(normalised, up_text, "{file} differs between sink render and sink up");
    }
}

#[test]
fn rendered_files_hold_no_secret_and_name_the_public_site() {
    let project = project_with_grafana("  public_host: laptop.tail1234.ts.net\n")
        .env("GREENFLOW_SINK_PASSWORD", "hunter2-render-secret")
        .env("GRAFANA_ADMIN_PASSWORD", "grafana-render-secret");
    let out = project.path().join("rendered");
    project.ok(&[
        "sink",
        "render",
        "--out",
        out.to_str().unwrap(),
        "--grafana-admin-password-file",
        "/run/credentials/grafana/admin-password",
    ]);
    let caddyfile = read(&out.join("caddy/Caddyfile"));
    assert!(caddyfile.contains("\"{$GREENFLOW_SINK_PASSWORD_HASH}\""), "{caddyfile}");
    assert!(caddyfile.contains("https://laptop.tail1234.ts.net {"), "{caddyfile}");
    let ini = read(&out.join("grafana/grafana.ini"));
    assert!(ini.contains("$__file{/run/credentials/grafana/admin-password}"), "{ini}");
    for entry in walk(&out) {
        let text = read(&entry);
        for secret in ["hunter2-render-secret", "grafana-render-secret"] {
            assert!(!text.contains(secret), "{} holds a secret", entry.display());
        }
    }
    assert!(!project.data_dir().join("secrets").exists(), "render generated secrets");
    let example = "$2b$10$abcdefghijklmnopqrstuuJ0DHbwjfF3hOZ0FbV9hqfPZyS8pX.R2".to_owned();
    let json = caddy_adapt(
        &out.join("caddy/Caddyfile"),
        &Hashes { owner: example.clone(), writer: example.clone(), reader: example },
    );
    assert!(json.to_string().contains("laptop.tail1234.ts.net"), "{json}");
}

#[test]
fn rendered_public_site_listens_on_the_given_tailnet_address_only() {
    let project = project_with_grafana("  public_host: laptop.tail1234.ts.net\n");
    let out = project.path().join("rendered");
    let render = |bind: &[&str]| {
        let mut args = vec!["sink", "render", "--out", out.to_str().unwrap()];
        args.extend(bind.iter().flat_map(|b| ["--bind", b]));
        project.ok(&args);
        let example = "$2b$10$abcdefghijklmnopqrstuuJ0DHbwjfF3hOZ0FbV9hqfPZyS8pX.R2".to_owned();
        caddy_adapt(
            &out.join("caddy/Caddyfile"),
            &Hashes { owner: example.clone(), writer: example.clone(), reader: example },
        )
    };
    // Caddy's own reading of the file: every server's listen addresses.
    let listens = |json: &Value| -> Vec<String> {
        let servers = json["apps"]["http"]["servers"].as_object().unwrap();
        let mut all: Vec<String> = servers
            .values()
            .flat_map(|server| server["listen"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()))
            .collect();
        all.sort();
        all
    };
    let bound = listens(&render(&["100.101.102.103", "fd7a:115c:a1e0::1"]));
    assert!(bound.iter().any(|l| l.starts_with("100.101.102.103:")), "{bound:?}");
    assert!(bound.iter().any(|l| l.contains("fd7a:115c:a1e0::1")), "{bound:?}");
    assert!(bound.iter().all(|l| !l.starts_with(':')), "no site listens on every interface: {bound:?}");
    // Without --bind, the public site listens on every interface (the firewall's to restrict).
    let open = listens(&render(&[]));
    assert!(open.iter().any(|l| l.starts_with(':')), "{open:?}");
    let bad = project.run(&["sink", "render", "--out", out.to_str().unwrap(), "--bind", "laptop"]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--bind"), "{}", describe(&bad));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}
