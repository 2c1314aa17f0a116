//! greenflow's NAR hash and store path of generated trees (nested directories, executables, symlinks, empty
//! files, odd names) against real Nix: `nix-hash --type sha256 --base32` and `nix-store --add-fixed --recursive`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use greenflow_data::NarHash;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Node {
    File { contents: Vec<u8>, executable: bool },
    Link(String),
    Dir(Vec<(String, Node)>),
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        (proptest::collection::vec(any::<u8>(), 0..300), any::<bool>())
            .prop_map(|(contents, executable)| Node::File { contents, executable }),
        "[a-z./]{1,12}".prop_map(Node::Link),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        proptest::collection::btree_map("[A-Za-z0-9._+-]{1,10}", inner, 0..5)
            .prop_map(|entries| Node::Dir(entries.into_iter().filter(|(n, _)| n != "." && n != "..").collect()))
    })
}

fn build(path: &Path, node: &Node) {
    match node {
        Node::File { contents, executable } => {
            std::fs::write(path, contents).unwrap();
            let mode = if *executable { 0o755 } else { 0o644 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Node::Link(target) => std::os::unix::fs::symlink(target, path).unwrap(),
        Node::Dir(entries) => {
            std::fs::create_dir(path).unwrap();
            for (name, child) in entries {
                build(&path.join(name), child);
            }
        }
    }
}

fn nix(args: &[&str], path: &Path) -> String {
    let output =
        Command::new(args[0]).args(&args[1..]).arg(path).output().expect("Nix is installed (scripts/install-deps)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
    #[test]
    fn nar_hash_is_nix_own(tree in node()) {
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("greenflow-run-tree");
        build(&root, &tree);
        let ours = NarHash::of_path(&root).unwrap();
        prop_assert_eq!(ours.nix_base32(), nix(&["nix-hash", "--type", "sha256", "--base32"], &root));
        prop_assert_eq!(ours.hex(), nix(&["nix-hash", "--type", "sha256"], &root));
    }

    /// Needs a writable Nix store (not inside a Nix build: `nix flake check` skips it, `scripts/test` runs it).
    #[test]
    fn store_path_is_nix_own(entries in proptest::collection::btree_map("[A-Za-z0-9._+-]{1,10}", node(), 0..4)) {
        let tree = Node::Dir(entries.into_iter().filter(|(n, _)| n != "." && n != "..").collect());
        let scratch = tempfile::tempdir().unwrap();
        let root = scratch.path().join("greenflow-run-tree");
        build(&root, &tree);
        let ours = NarHash::of_path(&root).unwrap();
        let stored = nix(&["nix-store", "--add-fixed", "--recursive", "sha256"], &root);
        prop_assert_eq!(ours.fixed_output_store_path("greenflow-run-tree"), stored);
    }
}
