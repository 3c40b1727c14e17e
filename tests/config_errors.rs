use std::path::Path;
#[test]
fn scratch() {
    let base = r#"[[source]]
type = "toml"
path = "groups"

[[target]]
name = "cms"
type = "contensis"
url = "https://cms.example.com"
client_id = "roster"
client_secret = "x"
"#;
    let cases = [
        base.replace("client_id", "clinet_id"),
        base.replace("\"contensis\"", "\"contensys\""),
        base.replace("url = \"https://cms.example.com\"\n", ""),
        format!("{base}\n{}", &base[base.find("[[target]]").unwrap()..]),
        format!("{base}membership = \"authorative\"\n"),
        format!("{base}timeout = \"30 parsecs\"\n"),
        format!("{base}timeout = \"thirty\"\n"),
        format!("{base}concurrency = 0\n"),
        format!("{base}max_deletes = -1\n"),
        format!("{base}prune = \"yes\"\n"),
        format!("{base}groups = [\"[a\"]\n"),
        base.replace("client_secret = \"x\"", "client_secret_file = \"/nonexistent/x\""),
        base.replace("name = \"cms\"\n", ""),
        base.replace("type = \"contensis\"\n", ""),
        format!("{base}[target.x]\n"),
        "[source]\ntype='toml'\npath='g'\n".to_string(),
        "x = = 1".to_string(),
        format!("{base}\n[foo]\n"),
    ];
    for c in cases {
        match roster::config::parse(&c, Path::new("roster.toml")) {
            Ok(cfg) => println!("OK warnings={:?}", cfg.warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>()),
            Err(e) => println!("ERR\n{e}"),
        }
        println!("---");
    }
}
