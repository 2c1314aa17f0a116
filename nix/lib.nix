# Pure helpers shared by the NixOS and home-manager modules. Builtins only, so that scripts/check-nix can evaluate
# them with a bare `nix-instantiate --eval` (tests/nix/lib.nix) where no nixpkgs is at hand.
let
  # Drops attributes whose value is null, recursively through attribute sets.
  dropNulls =
    attrs:
    builtins.listToAttrs (
      builtins.concatMap (
        name:
        let
          value = attrs.${name};
        in
        if value == null then
          [ ]
        else
          [
            {
              inherit name;
              value = if builtins.isAttrs value then dropNulls value else value;
            }
          ]
      ) (builtins.attrNames attrs)
    );
  # The flags that make VictoriaMetrics read its admin keys from the environment (GREENFLOW_VM_*), never from its
  # command line, which every local user can read (crates/greenflow-sink/src/layout.rs, victoria_metrics_args).
  victoriaMetricsEnvFlags = [
    "-envflag.enable"
    "-envflag.prefix=GREENFLOW_VM_"
  ];
in
{
  inherit dropNulls;

  # The greenflow.yaml (as an attribute set; YAML is a superset of the JSON `builtins.toJSON` writes) for a sink
  # described by the modules' options. `greenflow sink render --config` reads it, so the Caddyfile and Grafana's
  # provisioning come from the same renderers as `greenflow sink up`. No `sink.caddy.admin_port`: Caddy's admin API
  # is a unix socket under `paths.state_dir` (caddyAdminSocketDir below).
  sinkConfig =
    {
      username,
      retention,
      publicHost ? null,
      httpPort,
      victoriaMetricsPort,
      victoriaMetricsExtraFlags ? [ ],
      grafanaEnable ? true,
      grafanaPort,
      grafanaAdminUser ? "admin",
      dataDir,
      stateDir,
    }:
    dropNulls {
      sink = {
        inherit username retention;
        public_host = publicHost;
        http_port = httpPort;
        victoria_metrics = {
          port = victoriaMetricsPort;
          extra_args = victoriaMetricsExtraFlags;
        };
        grafana = {
          enabled = grafanaEnable;
          port = grafanaPort;
          admin_user = grafanaAdminUser;
        };
      };
      paths = {
        data_dir = dataDir;
        state_dir = stateDir;
      };
    };

  # Whether a retention is what greenflow and VictoriaMetrics both accept: a whole number with h, d, w or y.
  validRetention = retention: builtins.match "[1-9][0-9]*[hdwy]" retention != null;

  inherit victoriaMetricsEnvFlags;

  # The environment variables that set VictoriaMetrics' admin keys, all to the one key in
  # `<paths.data_dir>/secrets/victoria-metrics-admin-key`: `-envflag.prefix` plus the flag's name with dots as
  # underscores (VictoriaMetrics' lib/envflag). The flags are those of `victoria_metrics_admin_key_flags` in
  # crates/greenflow-sink/src/versions.rs; `-reloadAuthKey` came with VictoriaMetrics 1.97.
  victoriaMetricsAdminKeyVars =
    version:
    map (flag: "GREENFLOW_VM_${builtins.replaceStrings [ "." ] [ "_" ] flag}") (
      [
        "deleteAuthKey"
        "snapshotAuthKey"
        "forceMergeAuthKey"
        "search.resetCacheAuthKey"
        "pprofAuthKey"
        "flagsAuthKey"
        "configAuthKey"
      ]
      ++ (if builtins.compareVersions version "1.97.0" >= 0 then [ "reloadAuthKey" ] else [ ])
    );

  # VictoriaMetrics' command line as `greenflow sink up` builds it (crates/greenflow-sink/src/layout.rs).
  victoriaMetricsArgs =
    {
      port,
      dataDir,
      retention,
      latencyOffsetMs ? 2000,
      extraFlags ? [ ],
    }:
    victoriaMetricsEnvFlags
    ++ [
      "-httpListenAddr=127.0.0.1:${toString port}"
      "-storageDataPath=${dataDir}"
      "-retentionPeriod=${retention}"
      "-search.latencyOffset=${toString latencyOffsetMs}ms"
    ]
    ++ extraFlags;

  # The base URL users reach the sink at: the public host (a tailnet name, or an http(s) URL, whose one trailing
  # slash greenflow also accepts) or the loopback site.
  baseUrl =
    { publicHost, httpPort }:
    if publicHost == null then
      "http://127.0.0.1:${toString httpPort}"
    else
      let
        url = builtins.match "(https?://[^/]+)/?" publicHost;
      in
      if url != null then builtins.head url else "https://${publicHost}";

  # Where Caddy serves the public site for `sink.public_host` (a name, meaning https, or an http(s) URL, as
  # PublicAddress::parse in crates/greenflow-config/src/model.rs reads it): scheme, host, the TCP port (the URL's, else
  # 443 or 80) and whether the host is a tailnet name (`*.ts.net`, as crates/greenflow-render/src/caddy.rs decides
  # for the Caddyfile). Null without a public host, or for an address greenflow itself refuses.
  publicSite =
    publicHost:
    let
      withScheme =
        if builtins.match ".*://.*" publicHost != null then publicHost else "https://${publicHost}";
      parts = builtins.match "(https?)://([^]:/[]+|\\[[^]]+])(:0*([0-9]+))?/?" withScheme;
      scheme = builtins.elemAt parts 0;
      host = builtins.elemAt parts 1;
      port = builtins.elemAt parts 3;
    in
    if publicHost == null || parts == null then
      null
    else
      {
        inherit scheme host;
        port =
          if port != null then
            builtins.fromJSON port
          else if scheme == "https" then
            443
          else
            80;
        tailnet = builtins.match ".*[.][tT][sS][.][nN][eE][tT]" host != null;
      };

  # The host of an http(s) URL, without port or path: Grafana's `domain`.
  urlHost = url: builtins.head (builtins.match "https?://([^:/]+).*" url);

  # The directory (mode 0700, Caddy's user's) of Caddy's admin socket, `admin.sock`, for a `paths.state_dir`
  # (caddy_admin_dir in crates/greenflow-sink/src/layout.rs).
  caddyAdminSocketDir = stateDir: "${stateDir}/sink/caddy-admin";

  # The variables the rendered Caddyfile reads the bcrypt hashes from ({$VAR}; crates/greenflow-sink/src/render.rs).
  passwordHashVars = {
    owner = "GREENFLOW_SINK_PASSWORD_HASH";
    writer = "GREENFLOW_SINK_WRITER_PASSWORD_HASH";
    reader = "GREENFLOW_SINK_READER_PASSWORD_HASH";
  };

  # The systemd EnvironmentFile line that hands Caddy the bcrypt hash; single quotes keep its `$` literal.
  passwordHashEnvLine = hash: "GREENFLOW_SINK_PASSWORD_HASH='${hash}'";
}
