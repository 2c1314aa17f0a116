//! The least privilege greenflow needs in the cluster: one Role in `cluster.namespace` (runs, status, the Secret)
//! and one ClusterRole (the namespace, for `cluster install`), written once as data, printed by `greenflow cluster
//! rbac`, and checked against every request the tests make ([`permission_for`]).
//!
//! `helm upgrade --install` itself is not covered: the chart creates CustomResourceDefinitions, ClusterRoles and
//! webhooks, which take a cluster administrator.

/// One RBAC rule: these verbs on this resource of this API group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The API group (`""` for the core group).
    pub api_group: &'static str,
    /// The resource, with `/subresource` where one is meant (`pods/proxy`).
    pub resource: &'static str,
    /// The verbs.
    pub verbs: &'static [&'static str],
    /// Cluster-scoped (the ClusterRole) rather than in the namespace (the Role).
    pub cluster_scoped: bool,
    /// Which commands use it, for the comment in the printed YAML.
    pub used_by: &'static str,
}

/// Every permission greenflow's own requests need, and nothing more.
pub const RULES: &[Rule] = &[
    Rule {
        api_group: "monitoring.coreos.com",
        resource: "prometheuses",
        verbs: &["list", "patch"],
        cluster_scoped: false,
        used_by: "run, runs recover, cluster status: find the chart's Prometheus, scale it up and down",
    },
    Rule {
        api_group: "",
        resource: "pods",
        verbs: &["list"],
        cluster_scoped: false,
        used_by: "run: wait for Prometheus' pod to come and to be gone",
    },
    Rule {
        api_group: "",
        resource: "pods/proxy",
        verbs: &["get"],
        cluster_scoped: false,
        used_by: "run, cluster status: read Prometheus' /metrics (its remote-write queue) through the API server",
    },
    Rule {
        api_group: "",
        resource: "pods/log",
        verbs: &["get"],
        cluster_scoped: false,
        used_by: "run: read the last lines of Prometheus' and its route sidecar's logs when no sample arrives",
    },
    Rule {
        api_group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update", "delete"],
        cluster_scoped: false,
        used_by: "run, runs recover, cluster status, cluster uninstall: the experiment lock",
    },
    Rule {
        api_group: "",
        resource: "secrets",
        verbs: &["get", "list", "create", "update", "delete"],
        cluster_scoped: false,
        used_by: "cluster install/uninstall: the remote-write Secret; cluster status: Helm's release records",
    },
    Rule {
        api_group: "",
        resource: "namespaces",
        verbs: &["get", "create"],
        cluster_scoped: true,
        used_by: "cluster install: create cluster.namespace when it is missing",
    },
];

/// What one API request needs: group, resource (with subresource), verb and whether it is cluster-scoped; `None`
/// for requests no RBAC rule is needed for (`/version`, which every authenticated user may read).
pub fn permission_for(method: &str, path: &str, query: &str) -> Option<(String, String, String, bool)> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => return None,
    };
    let (cluster_scoped, rest) = match rest {
        ["namespaces", _ns, resource, more @ ..] => (false, [&[*resource][..], more].concat()),
        ["namespaces", name] => (true, vec!["namespaces", name]),
        ["namespaces"] => (true, vec!["namespaces"]),
        other => (true, other.to_vec()),
    };
    let (resource, has_name, subresource) = match rest.as_slice() {
        [resource] => (*resource, false, None),
        [resource, _name] => (*resource, true, None),
        [resource, _name, sub, ..] => (*resource, true, Some(*sub)),
        _ => return None,
    };
    let verb = match (method, has_name) {
        ("GET", false) if query.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    let resource = match subresource {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    // The proxy subresource is authorised by the verb of the method (GET: get).
    Some((group, resource, verb.to_owned(), cluster_scoped))
}

/// Whether [`RULES`] allow a request.
pub fn is_allowed(method: &str, path: &str, query: &str) -> bool {
    match permission_for(method, path, query) {
        None => true,
        Some((group, resource, verb, cluster_scoped)) => RULES.iter().any(|rule| {
            rule.api_group == group
                && rule.resource == resource
                && rule.cluster_scoped == cluster_scoped
                && rule.verbs.contains(&verb.as_str())
        }),
    }
}

/// The Role and ClusterRole as YAML, named `name`, the Role in `namespace`, with bindings to `subject` (a user
/// name) commented out.
pub fn render_rbac(namespace: &str, name: &str) -> String {
    let rules = |cluster_scoped: bool| {
        RULES
            .iter()
            .filter(|r| r.cluster_scoped == cluster_scoped)
            .map(|r| {
                format!(
                    "  # {}\n  - apiGroups: [\"{}\"]\n    resources: [\"{}\"]\n    verbs: [{}]\n",
                    r.used_by,
                    r.api_group,
                    r.resource,
                    r.verbs.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ")
                )
            })
            .collect::<String>()
    };
    format!(
        "# What greenflow needs in the cluster (`greenflow cluster rbac`). helm upgrade --install itself needs more: the\n\
         # chart creates CRDs and ClusterRoles, so a cluster administrator installs it once.\n\
         # Bind them to whoever runs greenflow, e.g.:\n\
         #   kubectl -n {namespace} create rolebinding {name} --role={name} --user=YOU\n\
         #   kubectl create clusterrolebinding {name} --clusterrole={name} --user=YOU\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: Role\n\
         metadata:\n  name: {name}\n  namespace: {namespace}\n\
         rules:\n{}\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRole\n\
         metadata:\n  name: {name}\n\
         rules:\n{}",
        rules(false),
        rules(true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_the_permission_they_need() {
        let p = |m, path, q| permission_for(m, path, q).map(|(g, r, v, c)| format!("{g}|{r}|{v}|{c}"));
        assert_eq!(p("GET", "/version", ""), None);
        assert_eq!(
            p("GET", "/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheuses", "labelSelector=a"),
            Some("monitoring.coreos.com|prometheuses|list|false".into())
        );
        assert_eq!(
            p("PATCH", "/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheuses/x", ""),
            Some("monitoring.coreos.com|prometheuses|patch|false".into())
        );
        assert_eq!(
            p("GET", "/api/v1/namespaces/monitoring/pods/prometheus-x-0:9090/proxy/metrics", ""),
            Some("|pods/proxy|get|false".into())
        );
        assert_eq!(p("POST", "/api/v1/namespaces", ""), Some("|namespaces|create|true".into()));
        assert_eq!(p("GET", "/api/v1/namespaces/monitoring", ""), Some("|namespaces|get|true".into()));
        assert!(!is_allowed("DELETE", "/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheuses/x", ""));
        assert!(!is_allowed("GET", "/api/v1/namespaces/monitoring/services/x:web/proxy/metrics", ""));
    }

    #[test]
    fn the_yaml_parses_into_a_role_and_a_cluster_role_with_every_rule() {
        let text = render_rbac("monitoring", "greenflow");
        let docs: Vec<serde_yaml::Value> =
            serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["kind"], "Role");
        assert_eq!(docs[0]["metadata"]["namespace"], "monitoring");
        assert_eq!(docs[1]["kind"], "ClusterRole");
        let count = |d: &serde_yaml::Value| d["rules"].as_sequence().unwrap().len();
        assert_eq!(count(&docs[0]) + count(&docs[1]), RULES.len());
        assert_eq!(docs[0]["rules"][2]["resources"][0], "pods/proxy");
    }
}
