//! The engine against Docker's documented `--format` examples
//! (docs.docker.com "Format command and log output" and the command
//! references) and Go's template rules.

use serde_json::{json, Value};

use super::*;

fn render(template: &str, data: &Value) -> String {
    match Template::parse(template).and_then(|t| t.render(data)) {
        Ok(out) => out,
        Err(e) => panic!("{template}: {e}"),
    }
}

fn error(template: &str, data: &Value) -> String {
    match Template::parse(template).and_then(|t| t.render(data)) {
        Ok(out) => panic!("{template} rendered {out:?}"),
        Err(e) => e.to_string(),
    }
}

fn container() -> Value {
    json!({
        "Name": "/my_container",
        "Args": ["-g", "daemon off;"],
        "Image": "ubuntu:latest",
        "Mounts": [{"Type": "volume", "Source": "data", "Destination": "/data"}],
        "NetworkSettings": {"Networks": {
            "bridge": {"IPAddress": "172.17.0.2"},
            "app": {"IPAddress": "10.0.1.5"}
        }},
        "Config": {"Labels": {"com.example.vendor": "ACME"}}
    })
}

#[test]
fn dockers_documented_functions() {
    let c = container();
    assert_eq!(render(r#"{{join .Args " , "}}"#, &c), "-g , daemon off;");
    assert_eq!(
        render("{{json .Mounts}}", &c),
        r#"[{"Destination":"/data","Source":"data","Type":"volume"}]"#
    );
    assert_eq!(render("{{lower .Name}}", &c), "/my_container");
    assert_eq!(render("{{upper .Name}}", &c), "/MY_CONTAINER");
    assert_eq!(render("{{title .Name}}", &c), "/My_container");
    assert_eq!(render(r#"{{split .Image ":"}}"#, &c), "[ubuntu latest]");
    assert_eq!(
        render(
            "{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}",
            &c
        ),
        "10.0.1.5\n172.17.0.2\n",
        "maps range in key order"
    );
    assert_eq!(render("{{pad .Image 2 3}}|", &c), "  ubuntu:latest   |");
    assert_eq!(
        render(r#"{{pad "" 2 3}}|"#, &c),
        "|",
        "pad leaves empty text alone"
    );
    assert_eq!(render("{{truncate .Image 6}}", &c), "ubuntu");
    assert_eq!(render("{{truncate .Image 60}}", &c), "ubuntu:latest");
    assert_eq!(
        render("{{json .}}", &json!({"b": 1, "a": "x<y"})),
        r#"{"a":"x<y","b":1}"#
    );
    assert_eq!(
        render(r#"{{index .Config.Labels "com.example.vendor"}}"#, &c),
        "ACME"
    );
    assert_eq!(
        render(r#"[{{index .Config.Labels "missing"}}]"#, &c),
        "[]",
        "a missing label is empty, as in Docker's typed maps"
    );
}

/// `docker node inspect --format '{{ .ManagerStatus.Leader }}'`, `docker
/// service inspect --format='{{.Spec.Mode.Replicated.Replicas}}'`, `docker
/// network inspect --format '{{range .IPAM.Config}}{{.Subnet}}{{end}}'`.
#[test]
fn command_reference_examples() {
    let node = json!({"ID": "e216jshn25ckzbvmwlnh5jr3g", "ManagerStatus": {"Leader": true, "Reachability": "reachable"}});
    assert_eq!(render("{{ .ManagerStatus.Leader }}", &node), "true");
    let service = json!({"Spec": {"Mode": {"Replicated": {"Replicas": 3}}, "Name": "redis"}});
    assert_eq!(render("{{.Spec.Mode.Replicated.Replicas}}", &service), "3");
    let network =
        json!({"IPAM": {"Config": [{"Subnet": "10.0.1.0/24"}, {"Subnet": "10.0.2.0/24"}]}});
    assert_eq!(
        render("{{range .IPAM.Config}}{{.Subnet}} {{end}}", &network),
        "10.0.1.0/24 10.0.2.0/24 "
    );
    assert_eq!(render("{{.Spec.Nope}}", &service), "<no value>");
    assert_eq!(
        render(
            "{{.Big}} {{.Ratio}}",
            &json!({"Big": 7776000000000000u64, "Ratio": 0.5})
        ),
        "7776000000000000 0.5"
    );
}

#[test]
fn control_structures() {
    let d = json!({"Name": "web", "Replicas": 3, "Empty": "", "List": ["a", "b", "c"], "Tags": {}, "Ok": true});
    assert_eq!(render("{{if .Ok}}yes{{else}}no{{end}}", &d), "yes");
    assert_eq!(render("{{if .Empty}}yes{{else}}no{{end}}", &d), "no");
    assert_eq!(
        render(
            "{{if eq .Name \"api\"}}1{{else if eq .Name \"web\"}}2{{else}}3{{end}}",
            &d
        ),
        "2"
    );
    assert_eq!(render("{{with .Name}}<{{.}}>{{end}}", &d), "<web>");
    assert_eq!(
        render("{{with .Empty}}<{{.}}>{{else}}none{{end}}", &d),
        "none"
    );
    assert_eq!(
        render("{{range $i, $e := .List}}{{$i}}={{$e}} {{end}}", &d),
        "0=a 1=b 2=c "
    );
    assert_eq!(
        render("{{range .Tags}}x{{else}}no tags{{end}}", &d),
        "no tags"
    );
    assert_eq!(
        render(
            "{{range .List}}{{if eq . \"b\"}}{{continue}}{{end}}{{.}}{{end}}",
            &d
        ),
        "ac"
    );
    assert_eq!(
        render(
            "{{range .List}}{{if eq . \"b\"}}{{break}}{{end}}{{.}}{{end}}",
            &d
        ),
        "a"
    );
    assert_eq!(
        render("{{$n := .Name}}{{range .List}}{{$n}}{{end}}", &d),
        "webwebweb"
    );
    assert_eq!(
        render("{{$x := 1}}{{if .Ok}}{{$x = 2}}{{end}}{{$x}}", &d),
        "2"
    );
    assert_eq!(
        render("{{range .List}}{{$.Name}}.{{.}} {{end}}", &d),
        "web.a web.b web.c "
    );
    assert_eq!(render("{{/* a comment */}}x", &d), "x");
    assert_eq!(render("a  {{- .Name -}}  b", &d), "awebb");
    assert_eq!(render("{{- /* trimmed */ -}}\n{{.Name}}", &d), "web");
}

#[test]
fn pipelines_and_builtins() {
    let d = json!({"Name": "web", "N": 3, "List": ["a", "b"], "Labels": {"x": "1"}});
    assert_eq!(render("{{.Name | upper}}", &d), "WEB");
    assert_eq!(
        render("{{.Name | printf \"%s-%d\" \"x\"}}", &json!({"Name": 5})),
        "x-5"
    );
    assert_eq!(render("{{(index .List 1) | upper}}", &d), "B");
    assert_eq!(
        render("{{len .List}} {{len .Name}} {{len .Labels}}", &d),
        "2 3 1"
    );
    assert_eq!(
        render("{{not .N}} {{and .N .Name}} {{or .Missing .Name}}", &d),
        "false web web"
    );
    assert_eq!(
        render(
            "{{eq .N 1 2 3}} {{ne .N 3}} {{lt .N 4}} {{ge .N 3}} {{gt \"b\" \"a\"}}",
            &d
        ),
        "true false true true true"
    );
    assert_eq!(
        render(
            "{{printf \"%-5s|%5s|%03d|%q|%v|%.2f\" .Name .Name .N .Name .List 1.5}}",
            &d
        ),
        "web  |  web|003|\"web\"|[a b]|1.50"
    );
    assert_eq!(render("{{print .Name .N}} {{print .N .N}}", &d), "web3 3 3");
    assert_eq!(render("{{println .Name .N}}", &d), "web 3\n");
    assert_eq!(
        render("{{slice .Name 1}} {{slice .List 0 1}}", &d),
        "eb [a]"
    );
    assert_eq!(
        render("{{html \"<a>\"}} {{urlquery \"a b&c\"}}", &d),
        "&lt;a&gt; a+b%26c"
    );
    assert_eq!(render("{{.Labels}} {{.List}}", &d), "map[x:1] [a b]");
    assert_eq!(render("{{json .Missing}}", &d), "null");
}

#[test]
fn errors_read_like_go() {
    let d = json!({"Name": "web", "List": ["a"]});
    assert_eq!(
        error("{{ .Name ", &d),
        "template parsing error: template: :1: unclosed action"
    );
    assert_eq!(
        error("{{bogus .Name}}", &d),
        "template parsing error: template: :1: function \"bogus\" not defined"
    );
    assert!(error("{{if .Name}}x", &d).contains("unexpected EOF"));
    assert!(error("{{end}}", &d).contains("unexpected {{end}}"));
    assert!(error("{{define \"x\"}}{{end}}", &d).contains("not supported"));
    assert!(error("{{range .Name}}{{end}}", &d).contains("range can't iterate over web"));
    assert!(error("{{range 5}}{{end}}", &d).contains("range can't iterate over 5"));
    assert!(error("{{pad .Name 99999999999 0}}", &d).contains("invalid count"));
    assert!(error("{{index .List 5}}", &d).contains("index out of range: 5"));
    assert!(error("{{.Name.First}}", &d).contains("can't evaluate field First in type string"));
    assert!(error("{{.Missing.First}}", &d).contains("nil pointer evaluating interface {}.First"));
    assert!(error("{{upper .List}}", &d).contains("expected string"));
    assert!(error("{{$nope}}", &d).contains("undefined variable: $nope"));
}

#[test]
fn rows_refuse_unknown_fields_and_take_methods() {
    let row = json!({"ID": "abc", "Labels": "a=1,b=2"});
    let t = Template::parse("{{.Nope}}").unwrap();
    assert_eq!(
        t.render_row(&row, "*formatter.networkContext", None)
            .unwrap_err()
            .to_string(),
        "template: :1:1: executing \"\" at <.Nope>: can't evaluate field Nope in type *formatter.networkContext"
    );
    let label = |name: &str, args: &[Val]| -> Option<Result<Val, String>> {
        (name == "Label").then(|| match args {
            [Some(Value::String(k))] if k == "a" => Ok(Some(json!("1"))),
            [Some(Value::String(_))] => Ok(Some(json!(""))),
            _ => Err("Label takes one name".into()),
        })
    };
    let t = Template::parse(r#"{{.ID}} {{.Label "a"}}[{{.Label "z"}}]"#).unwrap();
    assert_eq!(
        t.render_row(&row, "*formatter.networkContext", Some(&label))
            .unwrap(),
        "abc 1[]"
    );
    // Header: Docker's functions give the column name back, except pad.
    let header = json!({"ID": "NETWORK ID", "Name": "NAME"});
    let t = Template::parse("{{upper .ID}}|{{pad .Name 1 1}}|{{truncate .Name 2}}").unwrap();
    assert_eq!(
        t.render_header(&header, None).unwrap(),
        "NETWORK ID| NAME |NAME"
    );
}
