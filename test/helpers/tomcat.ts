/**
 * A real Apache Tomcat 10 (Debian's tomcat10 package) for the path tests: a throw-away
 * CATALINA_BASE in a temp dir (one HTTP connector on 127.0.0.1, shutdown port -1, no manager apps,
 * no JAR scanning), a tiny echo servlet compiled once per test file, `catalina.sh run` in its own
 * process group, stopped (and the temp dir removed) in teardown. Tomcat missing is a failure naming
 * the package, never a skip.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const CATALINA_HOME = '/usr/share/tomcat10';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** What the echo servlet answers (JSON). */
export interface TomcatEcho {
  /** Which servlet mapping matched: "admin" for `/admin/*`, "root" for `/*`. */
  readonly servlet: 'admin' | 'root';
  /** The mapping's pattern as Tomcat reports it (getHttpServletMapping().getPattern()). */
  readonly pattern: string;
  /** getRequestURI(): the path as received, not decoded, path parameters kept. */
  readonly uri: string;
  /** getServletPath() + getPathInfo(): the decoded, normalised path the application acts on. */
  readonly servletPath: string;
  readonly pathInfo: string | null;
  readonly method: string;
  /** Bytes of request body read. */
  readonly bodyBytes: number;
}

export interface Tomcat {
  readonly port: number;
  readonly origin: string;
  /** Output of catalina.sh (stdout + stderr), for failure messages. */
  readonly output: () => string;
}

// One servlet class, mapped twice (web.xml names them "admin" and "root"); the instance's name says which matched.
const SERVLET_SOURCE = `
import java.io.IOException;
import java.io.InputStream;
import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;

public class Echo extends HttpServlet {
  private static String q(String s) {
    if (s == null) return "null";
    StringBuilder b = new StringBuilder("\\"");
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\\\') b.append('\\\\').append(c);
      else if (c < 0x20 || c > 0x7e) b.append(String.format("\\\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append('"').toString();
  }
  @Override
  protected void service(HttpServletRequest req, HttpServletResponse res) throws IOException {
    long n = 0;
    InputStream in = req.getInputStream();
    byte[] buf = new byte[8192];
    for (int r; (r = in.read(buf)) != -1; ) n += r;
    String json = "{\\"servlet\\":" + q(getServletName()) + ",\\"pattern\\":" + q(req.getHttpServletMapping().getPattern())
        + ",\\"uri\\":" + q(req.getRequestURI()) + ",\\"servletPath\\":" + q(req.getServletPath())
        + ",\\"pathInfo\\":" + q(req.getPathInfo()) + ",\\"method\\":" + q(req.getMethod()) + ",\\"bodyBytes\\":" + n + "}";
    res.setContentType("application/json");
    res.setCharacterEncoding("UTF-8");
    res.getWriter().write(json);
  }
}
`;

const WEB_XML = `<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0" metadata-complete="true">
  <servlet><servlet-name>admin</servlet-name><servlet-class>Echo</servlet-class></servlet>
  <servlet><servlet-name>root</servlet-name><servlet-class>Echo</servlet-class></servlet>
  <servlet-mapping><servlet-name>admin</servlet-name><url-pattern>/admin/*</url-pattern></servlet-mapping>
  <servlet-mapping><servlet-name>root</servlet-name><url-pattern>/*</url-pattern></servlet-mapping>
</web-app>
`;

const serverXml = (port: number, appBase: string) => `<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="${port}" address="127.0.0.1" protocol="HTTP/1.1" connectionTimeout="5000" />
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="${appBase}" autoDeploy="false" deployOnStartup="false" unpackWARs="false">
        <Context path="" docBase="${join(appBase, 'ROOT')}" reloadable="false">
          <JarScanner scanClassPath="false" scanManifest="false" scanAllDirectories="false" scanAllFiles="false" />
        </Context>
      </Host>
    </Engine>
  </Service>
</Server>
`;

// No JAR is scanned for TLDs or annotations (most of a default start-up); console logging only.
const CATALINA_PROPERTIES = `common.loader="\${catalina.base}/lib","\${catalina.home}/lib/*.jar"
tomcat.util.scan.StandardJarScanFilter.jarsToSkip=*.jar
tomcat.util.scan.StandardJarScanFilter.jarsToScan=
`;
const LOGGING_PROPERTIES = `handlers = java.util.logging.ConsoleHandler
.handlers = java.util.logging.ConsoleHandler
.level = WARNING
java.util.logging.ConsoleHandler.level = WARNING
`;

/** A port the OS says is free (listen(0), then released for Tomcat to take). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address() as AddressInfo;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/ping', agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/**
 * Start Tomcat (`home`: CATALINA_HOME, Debian's by default) with the echo servlet; stopped in
 * teardown. Rejects (the test fails) when Tomcat or javac is missing, or Tomcat does not answer
 * within `startMs`.
 */
export async function startTomcat(t: Teardown, opts: { home?: string; startMs?: number } = {}): Promise<Tomcat> {
  const home = opts.home ?? CATALINA_HOME;
  const startMs = opts.startMs ?? 30_000;
  const servletApi = join(home, 'lib/servlet-api.jar');
  if (!existsSync(join(home, 'bin/catalina.sh')) || !existsSync(servletApi)) {
    throw new Error(`Apache Tomcat 10 is not installed at ${home}: run \`apt-get install tomcat10\` (the path tests need it)`);
  }
  const base = await mkdtemp(join(tmpdir(), 'wegate-tomcat-'));
  const running: { child?: ChildProcess } = {};
  t.teardown(async () => {
    const child = running.child;
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      await exited;
    }
    await rm(base, { recursive: true, force: true });
  });
  const classes = join(base, 'webapps/ROOT/WEB-INF/classes');
  await Promise.all([
    mkdir(classes, { recursive: true }),
    mkdir(join(base, 'conf'), { recursive: true }),
    mkdir(join(base, 'logs')),
    mkdir(join(base, 'temp')),
    mkdir(join(base, 'work')),
  ]);
  const port = await freePort();
  await Promise.all([
    writeFile(join(classes, 'Echo.java'), SERVLET_SOURCE),
    writeFile(join(base, 'webapps/ROOT/WEB-INF/web.xml'), WEB_XML),
    writeFile(join(base, 'conf/server.xml'), serverXml(port, join(base, 'webapps'))),
    writeFile(join(base, 'conf/catalina.properties'), CATALINA_PROPERTIES),
    writeFile(join(base, 'conf/logging.properties'), LOGGING_PROPERTIES),
  ]);
  try {
    await promisify(execFile)('javac', ['-nowarn', '-cp', servletApi, '-d', classes, join(classes, 'Echo.java')], { timeout: 60_000 });
  } catch (e) {
    throw new Error(`cannot compile the Tomcat echo servlet (javac 17 from openjdk-17-jdk-headless is needed): ${(e as Error).message}`, {
      cause: e,
    });
  }
  let output = '';
  const child = spawn(join(home, 'bin/catalina.sh'), ['run'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      CATALINA_HOME: home,
      CATALINA_BASE: base,
      CATALINA_TMPDIR: join(base, 'temp'),
      // A short-lived JVM: C1 only, one GC thread, class-data sharing.
      JAVA_OPTS: '-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto -Xss512k -Djava.security.egd=file:/dev/urandom',
    },
  });
  running.child = child;
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const deadline = Date.now() + startMs;
  while (!(await ping(port))) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`Tomcat exited during start-up:\n${output}`);
    if (Date.now() > deadline) throw new Error(`Tomcat did not answer on port ${port} within ${startMs} ms:\n${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, origin: `http://127.0.0.1:${port}`, output: () => output };
}
