//! Real servlet containers as consoles: Jetty 9.4 (Debian `jetty9`) and Tomcat 10.1
//! (Debian `tomcat10`), each serving one webapp at `/app` with the container's own FORM
//! login (`j_security_check`, `j_username`, `j_password`) and an in-container user list,
//! run as child processes on a free loopback port.
//!
//! The webapp: `/app/login.jsp` (the form; public: no auth-constraint), `/app/static/*`
//! (public), `/app/whoami.jsp` (`user=NAME session=ID`, protected), `/app/logout.jsp`
//! (invalidates the session), everything else protected. What the container itself says
//! counts: `whoami.jsp` prints `request.getRemoteUser()`, and the container's access log
//! (one line per request, the authenticated user in the third field) is read back.
//!
//! A missing `jetty9`/`tomcat10` package fails the test; it never skips.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{free_port, wait_until_listening, Browser, FormLogin};

/// The gate's form mode for the webapp (both containers).
pub fn form_login() -> FormLogin {
    FormLogin {
        login_path: "/app/j_security_check",
        login_page: Some("/app/login.jsp"),
        username_field: "j_username",
        session_cookie: "JSESSIONID",
        failure_location: "/app/login.jsp",
        public: vec!["/app/login.jsp", "/app/static/*"],
        logout_path: Some("/app/logout.jsp"),
        follow_renewal: false,
    }
}

const WEB_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="NAMESPACE" version="VERSION">
  <security-constraint>
    <web-resource-collection><web-resource-name>all</web-resource-name><url-pattern>/*</url-pattern></web-resource-collection>
    <auth-constraint><role-name>admin</role-name></auth-constraint>
  </security-constraint>
  <security-constraint>
    <web-resource-collection><web-resource-name>public</web-resource-name><url-pattern>/login.jsp</url-pattern><url-pattern>/static/*</url-pattern></web-resource-collection>
  </security-constraint>
  <security-role><role-name>admin</role-name></security-role>
  <login-config>
    <auth-method>FORM</auth-method>
    <realm-name>Console</realm-name>
    <form-login-config><form-login-page>/login.jsp</form-login-page><form-error-page>/login.jsp?error=1</form-error-page></form-login-config>
  </login-config>
</web-app>
"#;

const LOGIN_JSP: &str = r#"<%@ page session="true" %><html><body>login page; user=<%= request.getRemoteUser() %>
<form method="post" action="j_security_check"><input name="j_username"><input name="j_password" type="password"><button>Sign in</button></form></body></html>
"#;

const WHOAMI_JSP: &str = r#"<%@ page session="true" contentType="text/plain" %>user=<%= request.getRemoteUser() %> session=<%= session.getId() %>
"#;

const INDEX_JSP: &str = r#"<%@ page session="true" %><html><body>Welcome <%= request.getRemoteUser() %></body></html>
"#;

const LOGOUT_JSP: &str = r#"<%@ page session="true" %><% session.invalidate(); %>bye
"#;

/// Which container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jetty,
    Tomcat,
}

/// One request as the container logged it.
#[derive(Debug, Clone)]
pub struct Access {
    /// The authenticated user (`-` for none).
    pub user: String,
    /// The request line, e.g. `GET /app/whoami.jsp HTTP/1.1`.
    pub request: String,
    pub status: u16,
}

/// A running container, killed on drop.
pub struct Servlet {
    pub kind: Kind,
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn webapp(root: &Path, namespace: &str, version: &str) {
    write(
        &root.join("WEB-INF/web.xml"),
        &WEB_XML
            .replace("NAMESPACE", namespace)
            .replace("VERSION", version),
    );
    write(&root.join("login.jsp"), LOGIN_JSP);
    write(&root.join("whoami.jsp"), WHOAMI_JSP);
    write(&root.join("index.jsp"), INDEX_JSP);
    write(&root.join("logout.jsp"), LOGOUT_JSP);
    write(&root.join("static/style.css"), "body{}\n");
}

impl Servlet {
    /// Jetty 9.4 from `/usr/share/jetty9` with `users` (name, password; role `admin`).
    pub fn jetty(users: &[(&str, &str)]) -> Servlet {
        let home = Path::new("/usr/share/jetty9");
        assert!(
            home.join("start.jar").exists(),
            "Jetty 9 is required for this test (apt-get install jetty9); this test does not skip"
        );
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        webapp(
            &base.join("webapps/app"),
            "http://xmlns.jcp.org/xml/ns/javaee",
            "3.1",
        );
        let realm: String = users
            .iter()
            .map(|(u, p)| format!("{u}: {p}, admin\n"))
            .collect();
        write(&base.join("etc/realm.properties"), &realm);
        write(
            &base.join("webapps/app.xml"),
            r#"<?xml version="1.0"?>
<!DOCTYPE Configure PUBLIC "-//Jetty//Configure//EN" "http://www.eclipse.org/jetty/configure_9_3.dtd">
<Configure class="org.eclipse.jetty.webapp.WebAppContext">
  <Set name="contextPath">/app</Set>
  <Set name="war"><Property name="jetty.base"/>/webapps/app</Set>
  <Get name="securityHandler">
    <Set name="loginService">
      <New class="org.eclipse.jetty.security.HashLoginService">
        <Set name="name">Console</Set>
        <Set name="config"><Property name="jetty.base"/>/etc/realm.properties</Set>
      </New>
    </Set>
  </Get>
</Configure>
"#,
        );
        std::fs::create_dir_all(base.join("logs")).unwrap();
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            write(
                &base.join("start.ini"),
                &format!(
                    "--module=server,http,deploy,jsp,security,requestlog\njetty.http.host=127.0.0.1\njetty.http.port={port}\njetty.requestlog.filePath=logs/access.log\njetty.requestlog.append=true\n"
                ),
            );
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let out_path = base.join("jetty.out");
            let output = std::fs::File::create(&out_path).unwrap();
            let child = Command::new("java")
                .current_dir(base)
                .args([
                    "-jar",
                    &home.join("start.jar").display().to_string(),
                    &format!("jetty.home={}", home.display()),
                    &format!("jetty.base={}", base.display()),
                ])
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run java (default-jdk-headless): {e}"));
            match wait_until_listening(child, addr, &out_path, "jetty") {
                Ok(child) => {
                    let s = Servlet {
                        kind: Kind::Jetty,
                        addr,
                        child,
                        dir,
                    };
                    s.warm_up();
                    return s;
                }
                Err(e) => last_error = e,
            }
        }
        panic!("Jetty did not start: {last_error}");
    }

    /// Tomcat 10.1 from `/usr/share/tomcat10` with `users` (name, password; role `admin`).
    pub fn tomcat(users: &[(&str, &str)]) -> Servlet {
        let home = Path::new("/usr/share/tomcat10");
        assert!(
            home.join("bin/catalina.sh").exists(),
            "Tomcat 10 is required for this test (apt-get install tomcat10); this test does not skip"
        );
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for d in ["conf", "logs", "temp", "work", "webapps"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        for f in [
            "catalina.properties",
            "context.xml",
            "jaspic-providers.xml",
            "logging.properties",
            "web.xml",
        ] {
            std::fs::copy(home.join("etc").join(f), base.join("conf").join(f)).unwrap();
        }
        webapp(
            &base.join("webapps/app"),
            "https://jakarta.ee/xml/ns/jakartaee",
            "5.0",
        );
        let users_xml: String = users
            .iter()
            .map(|(u, p)| format!("  <user username=\"{u}\" password=\"{p}\" roles=\"admin\"/>\n"))
            .collect();
        write(
            &base.join("conf/tomcat-users.xml"),
            &format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<tomcat-users xmlns=\"http://tomcat.apache.org/xml\" version=\"1.0\">\n  <role rolename=\"admin\"/>\n{users_xml}</tomcat-users>\n"),
        );
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            write(
                &base.join("conf/server.xml"),
                &format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <GlobalNamingResources>
    <Resource name="UserDatabase" auth="Container" type="org.apache.catalina.UserDatabase" factory="org.apache.catalina.users.MemoryUserDatabaseFactory" pathname="conf/tomcat-users.xml" />
  </GlobalNamingResources>
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1" protocol="HTTP/1.1" connectionTimeout="20000" />
    <Engine name="Catalina" defaultHost="localhost">
      <Realm className="org.apache.catalina.realm.UserDatabaseRealm" resourceName="UserDatabase"/>
      <Host name="localhost" appBase="webapps" unpackWARs="true" autoDeploy="false">
        <Valve className="org.apache.catalina.valves.AccessLogValve" directory="logs" prefix="access" suffix=".log" fileDateFormat="" buffered="false" pattern="%h %l %u %t &quot;%r&quot; %s %b" />
      </Host>
    </Engine>
  </Service>
</Server>
"#
                ),
            );
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let out_path = base.join("catalina.out");
            let output = std::fs::File::create(&out_path).unwrap();
            let child = Command::new(home.join("bin/catalina.sh"))
                .arg("run")
                .current_dir(base)
                .env("CATALINA_HOME", home)
                .env("CATALINA_BASE", base)
                .env("CATALINA_TMPDIR", base.join("temp"))
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run catalina.sh: {e}"));
            match wait_until_listening(child, addr, &out_path, "tomcat") {
                Ok(child) => {
                    let s = Servlet {
                        kind: Kind::Tomcat,
                        addr,
                        child,
                        dir,
                    };
                    s.warm_up();
                    return s;
                }
                Err(e) => last_error = e,
            }
        }
        panic!("Tomcat did not start: {last_error}");
    }

    /// Waits until the webapp is deployed (the port opens before it is) and its JSPs are
    /// compiled, so the first request of a test does not time out.
    fn warm_up(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(text) = self.direct_get("/app/login.jsp") {
                if text.contains("login page") {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the webapp did not deploy"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        self.direct_get("/app/static/style.css");
    }

    /// A plain GET straight to the container (not through the gate).
    pub fn direct_get(&self, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    fn access_log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("logs/access.log")
    }

    /// Every request the container logged so far (waits briefly for the log to catch up).
    pub fn access_log(&self) -> Vec<Access> {
        std::thread::sleep(std::time::Duration::from_millis(300));
        std::fs::read_to_string(self.access_log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                // host ident user [date] "request" status size
                let mut fields = line.splitn(4, ' ');
                let _host = fields.next()?;
                let _ident = fields.next()?;
                let user = fields.next()?.to_string();
                let rest = fields.next()?;
                let request = rest.split('"').nth(1)?.to_string();
                let status = rest
                    .split('"')
                    .nth(2)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                Some(Access {
                    user,
                    request,
                    status,
                })
            })
            .collect()
    }
}

impl Drop for Servlet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        // (`catalina.sh run` execs java, so the child is the JVM itself.)
        let _ = self.child.wait();
    }
}

/// The user the container names on `whoami.jsp`, asked through the gate.
pub async fn console_user(b: &Browser) -> Option<String> {
    whoami_user(&b.get("/app/whoami.jsp").await.body)
}

/// The user `whoami.jsp` names in a response body, if any.
pub fn whoami_user(body: &str) -> Option<String> {
    let rest = body.split("user=").nth(1)?;
    let name = rest.split_whitespace().next()?;
    (name != "null").then(|| name.to_string())
}
