# Shell shared by the NixOS and home-manager modules for the secrets the sink's services need at start. A missing
# password or key is generated as `greenflow sink up` generates it (random, alphanumeric, 0600, under
# `<paths.data_dir>/secrets`, where the CLI reads it: crates/greenflow-sink/src/layout.rs), and the services get them
# through systemd environment files (Caddy the bcrypt hashes, VictoriaMetrics its admin key): never on a command line,
# never in the Nix store.
{ pkgs }:
let
  inherit (pkgs) lib;
  gflib = import ../nix/lib.nix;
  bin = "${pkgs.coreutils}/bin";
in
{
  # Shell functions for the snippets below; every script starts with it.
  preamble = ''
    set -euo pipefail
    umask 077
    # generate FILE: a random secret unless FILE holds one: 48 random bytes in base64 without / + =, some 62 letters
    # and digits (greenflow's own are alphanumeric too).
    generate() {
      if [ ! -s "$1" ]; then
        ${bin}/head -c 48 /dev/urandom | ${bin}/base64 -w0 | ${bin}/tr -d '/+=' > "$1.new"
        ${bin}/mv -f "$1.new" "$1"
      fi
    }
    # read_secret WHAT FILE: FILE's secret, trailing newlines dropped, in $secret. An empty one, or one with a control
    # character (a second line), is refused: Caddy would hash its first line only, the CLI would read it whole. So is
    # one with leading or trailing blanks: the CLI trims them (crates/greenflow-sink/src/files.rs), Caddy would not.
    read_secret() {
      secret="$(${bin}/cat "$2")"
      case "$secret" in
        "" | *[[:cntrl:]]*)
          echo "greenflow sink: the $1 in $2 is empty or holds a control character (a second line?); write it on one line" >&2
          exit 1
          ;;
        [[:space:]]* | *[[:space:]])
          echo "greenflow sink: the $1 in $2 has leading or trailing blanks; remove them" >&2
          exit 1
          ;;
      esac
    }
    # write FILE: standard input into FILE (0600 by the umask), which is replaced whole.
    write() {
      ${bin}/cat > "$1.new"
      ${bin}/mv -f "$1.new" "$1"
    }
  '';

  # Caddy's environment file: the bcrypt hashes of the owner's, the writer's and the reader's passwords for the
  # rendered Caddyfile's three placeholders. The writer's password is kept where the CLI reads it (`writerCopy`):
  # generated there when `writerPasswordFile` is null, else a copy of that file, made once it has passed the checks.
  # The reader's (Grafana's datasource credential, the query API only) is always generated (`readerCopy`). `caddy` is
  # Caddy's executable (its `hash-password` reads one line from standard input). Every file is a shell word, quoted
  # by the caller, which may use `"$CREDENTIALS_DIRECTORY"` or `"$RUNTIME_DIRECTORY"`.
  caddyEnv =
    {
      caddy,
      ownerPasswordFile,
      writerPasswordFile,
      writerCopy,
      readerCopy,
      envFile,
    }:
    ''
      read_secret "owner's password (passwordFile)" ${ownerPasswordFile}
      owner="$secret"
      ${
        if writerPasswordFile != null then
          ''
            read_secret "writer's password (writerPasswordFile)" ${writerPasswordFile}
          ''
        else
          ''
            generate ${writerCopy}
            read_secret "writer's password" ${writerCopy}
          ''
      }
      writer="$secret"
      if [ "$owner" = "$writer" ]; then
        echo "greenflow sink: the writer's password (the cluster's credential, remote write only) is the owner's; give the writer a password of its own" >&2
        exit 1
      fi
      ${lib.optionalString (writerPasswordFile != null) "printf '%s' \"$writer\" | write ${writerCopy}"}
      generate ${readerCopy}
      read_secret "reader's password" ${readerCopy}
      reader="$secret"
      owner_hash="$(printf '%s\n' "$owner" | ${caddy} hash-password)"
      writer_hash="$(printf '%s\n' "$writer" | ${caddy} hash-password)"
      reader_hash="$(printf '%s\n' "$reader" | ${caddy} hash-password)"
      printf "%s='%s'\n" \
        ${gflib.passwordHashVars.owner} "$owner_hash" \
        ${gflib.passwordHashVars.writer} "$writer_hash" \
        ${gflib.passwordHashVars.reader} "$reader_hash" | write ${envFile}
    '';

  # VictoriaMetrics' environment file: every admin key variable (nix/lib.nix, victoriaMetricsAdminKeyVars, for this
  # VictoriaMetrics `version`) set to the key in `keyFile`, generated when missing. Only URL-safe characters are
  # accepted: the key travels as `?authKey=`. Both files are shell words, as above.
  victoriaMetricsEnv =
    {
      keyFile,
      version,
      envFile,
    }:
    ''
      key=${keyFile}
      generate "$key"
      read_secret "VictoriaMetrics admin key" "$key"
      case "$secret" in
        *[!A-Za-z0-9._~-]*)
          echo "greenflow sink: the VictoriaMetrics admin key in $key holds other characters than letters, digits and ._~-; remove the file to have a new one generated" >&2
          exit 1
          ;;
      esac
      printf "%s='%s'\n" \
        ${
          lib.concatMapStringsSep " \\\n  " (var: "${var} \"$secret\"") (
            gflib.victoriaMetricsAdminKeyVars version
          )
        } | write ${envFile}
    '';
}
