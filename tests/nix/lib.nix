# Evaluated by scripts/check-nix with `nix-instantiate --eval --strict`: every case must hold, else the evaluation
# fails naming the cases that do not.
let
  lib = import ../../nix/lib.nix;
  cases = {
    dropNullsRecurses = {
      got = lib.dropNulls {
        a = null;
        b = {
          c = null;
          d = 1;
        };
        e = [ null ];
      };
      want = {
        b.d = 1;
        e = [ null ];
      };
    };
    sinkConfigDefaults = {
      got = lib.sinkConfig {
        username = "greenflow";
        retention = "100y";
        httpPort = 8080;
        victoriaMetricsPort = 8428;
        grafanaPort = 3000;
        dataDir = "/var/lib/greenflow";
        stateDir = "/run/greenflow";
      };
      want = {
        sink = {
          username = "greenflow";
          retention = "100y";
          http_port = 8080;
          victoria_metrics = {
            port = 8428;
            extra_args = [ ];
          };
          grafana = {
            enabled = true;
            port = 3000;
            admin_user = "admin";
          };
        };
        paths = {
          data_dir = "/var/lib/greenflow";
          state_dir = "/run/greenflow";
        };
      };
    };
    sinkConfigPublicHostIsKept = {
      got =
        (lib.sinkConfig {
          username = "u";
          retention = "1d";
          publicHost = "laptop.tail1234.ts.net";
          httpPort = 1;
          victoriaMetricsPort = 2;
          grafanaPort = 4;
          dataDir = "/d";
          stateDir = "/s";
        }).sink.public_host;
      want = "laptop.tail1234.ts.net";
    };
    sinkConfigIsJson = {
      got = builtins.toJSON (
        lib.sinkConfig {
          username = "u";
          retention = "1d";
          httpPort = 1;
          victoriaMetricsPort = 2;
          grafanaEnable = false;
          grafanaPort = 4;
          dataDir = "/d";
          stateDir = "/s";
        }
      );
      want = ''{"paths":{"data_dir":"/d","state_dir":"/s"},"sink":{"grafana":{"admin_user":"admin","enabled":false,"port":4},"http_port":1,"retention":"1d","username":"u","victoria_metrics":{"extra_args":[],"port":2}}}'';
    };
    retentionAccepted = {
      got = map lib.validRetention [
        "100y"
        "1d"
        "36h"
        "2w"
      ];
      want = [
        true
        true
        true
        true
      ];
    };
    retentionRefused = {
      got = map lib.validRetention [
        "0d"
        "1m"
        "10"
        "1.5y"
        " 1d"
      ];
      want = [
        false
        false
        false
        false
        false
      ];
    };
    victoriaMetricsArgs = {
      got = lib.victoriaMetricsArgs {
        port = 8428;
        dataDir = "/data/vm";
        retention = "100y";
        extraFlags = [ "-loggerLevel=WARN" ];
      };
      want = [
        "-envflag.enable"
        "-envflag.prefix=GREENFLOW_VM_"
        "-httpListenAddr=127.0.0.1:8428"
        "-storageDataPath=/data/vm"
        "-retentionPeriod=100y"
        "-search.latencyOffset=2000ms"
        "-loggerLevel=WARN"
      ];
    };
    baseUrlLoopback = {
      got = lib.baseUrl {
        publicHost = null;
        httpPort = 8080;
      };
      want = "http://127.0.0.1:8080";
    };
    baseUrlTailnet = {
      got = lib.baseUrl {
        publicHost = "laptop.tail1234.ts.net";
        httpPort = 8080;
      };
      want = "https://laptop.tail1234.ts.net";
    };
    baseUrlGiven = {
      got = lib.baseUrl {
        publicHost = "https://laptop.tail1234.ts.net:8443";
        httpPort = 8080;
      };
      want = "https://laptop.tail1234.ts.net:8443";
    };
    baseUrlTrailingSlash = {
      got = lib.baseUrl {
        publicHost = "https://metrics.example.org/";
        httpPort = 8080;
      };
      want = "https://metrics.example.org";
    };
    publicSiteNone = {
      got = lib.publicSite null;
      want = null;
    };
    publicSiteTailnetName = {
      got = lib.publicSite "laptop.tail1234.ts.net";
      want = {
        scheme = "https";
        host = "laptop.tail1234.ts.net";
        port = 443;
        tailnet = true;
      };
    };
    publicSiteTailnetUrlWithPort = {
      got = lib.publicSite "https://Laptop.Tail1234.TS.NET:08443/";
      want = {
        scheme = "https";
        host = "Laptop.Tail1234.TS.NET";
        port = 8443;
        tailnet = true;
      };
    };
    publicSiteNameWithPort = {
      got = lib.publicSite "laptop.tail1234.ts.net:8443";
      want = {
        scheme = "https";
        host = "laptop.tail1234.ts.net";
        port = 8443;
        tailnet = true;
      };
    };
    publicSitePlainHttp = {
      got = lib.publicSite "http://sink:8081";
      want = {
        scheme = "http";
        host = "sink";
        port = 8081;
        tailnet = false;
      };
    };
    publicSiteOtherHttps = {
      got = map (host: (lib.publicSite host).port) [
        "https://metrics.example.org"
        "http://metrics.example.org"
        "https://[fd7a:115c:a1e0::1]:8443"
      ];
      want = [
        443
        80
        8443
      ];
    };
    publicSiteNotTailnet = {
      got = map (host: (lib.publicSite host).tailnet) [
        "ts.net"
        "laptop.ts.network"
        "laptop.ts.net.example.org"
      ];
      want = [
        false
        false
        false
      ];
    };
    publicSiteRefused = {
      got = map lib.publicSite [
        "https://laptop.tail1234.ts.net/vm"
        "ftp://laptop.tail1234.ts.net"
      ];
      want = [
        null
        null
      ];
    };
    urlHostPlain = {
      got = lib.urlHost "https://laptop.tail1234.ts.net";
      want = "laptop.tail1234.ts.net";
    };
    urlHostPortAndPath = {
      got = lib.urlHost "http://sink:8081/vm/";
      want = "sink";
    };
    victoriaMetricsAdminKeyVars = {
      got = lib.victoriaMetricsAdminKeyVars "1.122.1";
      want = [
        "GREENFLOW_VM_deleteAuthKey"
        "GREENFLOW_VM_snapshotAuthKey"
        "GREENFLOW_VM_forceMergeAuthKey"
        "GREENFLOW_VM_search_resetCacheAuthKey"
        "GREENFLOW_VM_pprofAuthKey"
        "GREENFLOW_VM_flagsAuthKey"
        "GREENFLOW_VM_configAuthKey"
        "GREENFLOW_VM_reloadAuthKey"
      ];
    };
    victoriaMetricsReloadKeySince197 = {
      got =
        map (version: builtins.elem "GREENFLOW_VM_reloadAuthKey" (lib.victoriaMetricsAdminKeyVars version))
          [
            "1.96.0"
            "1.97.0"
            "1.97.1"
            "1.102.0-rc1"
            ""
          ];
      want = [
        false
        true
        true
        true
        false
      ];
    };
    caddyAdminSocketDir = {
      got = lib.caddyAdminSocketDir "/run/greenflow-sink";
      want = "/run/greenflow-sink/sink/caddy-admin";
    };
    passwordHashEnvLine = {
      got = lib.passwordHashEnvLine "$2a$14$abc";
      want = "GREENFLOW_SINK_PASSWORD_HASH='$2a$14$abc'";
    };
  };
  failed = builtins.filter (name: cases.${name}.got != cases.${name}.want) (builtins.attrNames cases);
in
if failed == [ ] then
  "${toString (builtins.length (builtins.attrNames cases))} passed, 0 failed"
else
  throw "failed: ${builtins.concatStringsSep ", " failed}"
