import Foundation
import Synchronization

/// A throwaway PostgreSQL server for the test process, from Debian's `postgresql` (`make test` installs it): its own
/// data folder and a free port on 127.0.0.1, started on first use and stopped when the process exits. As root it runs
/// as the `postgres` user (PostgreSQL refuses root). Without a server installed it throws — under CI a failure, as
/// for the broker.
package final class LocalPostgres: Sendable {
    package let port: Int
    package let directory: String
    private let binaries: String

    /// The root that signed the server's certificate (subjectAltName `IP:127.0.0.1`, `DNS:localhost`), made with
    /// openssl at start: the server has `ssl=on`.
    package var rootCertificate: String { "\(directory)/tls/root.crt" }
    /// A root that signed nothing the server holds.
    package var otherRootCertificate: String { "\(directory)/tls/other.crt" }
    /// A role the server refuses unless the connection is encrypted (`hostnossl … reject`).
    package static let encryptedOnlyRole = "encrypted_only"

    /// A URL for a new, empty database of its own.
    package func newDatabaseURL(_ prefix: String = "ledger") async throws -> String {
        let name = "\(prefix)_\(UUID().uuidString.prefix(8).lowercased())"
        try await Self.run([
            "\(binaries)/psql", "-h", directory, "-p", "\(port)", "-U", "warren", "-d", "postgres", "-q",
            "-c", "CREATE DATABASE \(name)",
        ])
        return "postgres://warren@127.0.0.1:\(port)/\(name)"
    }

    /// Runs `sql` with psql in the database of `url` (one of ``newDatabaseURL(_:)``'s), as the server's superuser.
    package func execute(_ sql: String, in url: String) async throws {
        let database = String(url.split(separator: "/").last?.split(separator: "?").first ?? "")
        try await Self.run([
            "\(binaries)/psql", "-h", directory, "-p", "\(port)", "-U", "warren", "-d", database, "-q", "-v",
            "ON_ERROR_STOP=1", "-c", sql,
        ])
    }

    /// A URL for a new database owned by ``encryptedOnlyRole``, which the server refuses without TLS; `host` is
    /// `127.0.0.1` or `localhost`.
    package func newEncryptedOnlyDatabaseURL(host: String = "127.0.0.1") async throws -> String {
        let name = "tls_\(UUID().uuidString.prefix(8).lowercased())"
        try await Self.run([
            "\(binaries)/psql", "-h", directory, "-p", "\(port)", "-U", "warren", "-d", "postgres", "-q",
            "-c", "CREATE DATABASE \(name) OWNER \(Self.encryptedOnlyRole)",
        ])
        return "postgres://\(Self.encryptedOnlyRole)@\(host):\(port)/\(name)"
    }

    package static func shared() async throws -> LocalPostgres {
        try TestService.require(.postgres)
        return try await sharedServer.value
    }

    private static let sharedServer = Task { try await LocalPostgres.start() }

    private init(port: Int, directory: String, binaries: String) {
        self.port = port
        self.directory = directory
        self.binaries = binaries
    }

    private static func start() async throws -> LocalPostgres {
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        guard
            let version = versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }).first(where: {
                FileManager.default.isExecutableFile(atPath: "/usr/lib/postgresql/\($0)/bin/initdb")
            })
        else {
            throw TestFailure("PostgreSQL is not installed (apt-get install postgresql; make test installs it)")
        }
        let binaries = "/usr/lib/postgresql/\(version)/bin"
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "warren-postgres-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if getuid() == 0 { try await run(["/bin/chown", "postgres:postgres", directory], asPostgres: false) }
        try await run([
            "\(binaries)/initdb", "-D", "\(directory)/data", "-A", "trust", "-U", "warren", "--no-sync", "-E", "UTF8",
        ])
        try await makeCertificates(in: "\(directory)/tls")
        // Connections for the encrypted-only role are refused without TLS; every other rule stays as initdb wrote it.
        let hba = "\(directory)/data/pg_hba.conf"
        let rules = (try? String(contentsOfFile: hba, encoding: .utf8)) ?? ""
        try await run([
            "/bin/sh", "-c",
            "printf '%s\\n%s' \"hostnossl all \(encryptedOnlyRole) 127.0.0.1/32 reject\" \"$0\" > \(hba)", rules,
        ])
        // PostgreSQL cannot bind port 0 and say which port it got: it is told a port that was free a moment ago, and
        // told another when something took that one in between.
        var port = 0
        for attempt in 1...5 {
            port = try freeTCPPort()
            if try await startServer(binaries: binaries, directory: directory, port: port, lastAttempt: attempt == 5) {
                break
            }
        }
        try await run([
            "\(binaries)/psql", "-h", directory, "-p", "\(port)", "-U", "warren", "-d", "postgres", "-q",
            "-c", "CREATE ROLE \(encryptedOnlyRole) LOGIN CREATEDB",
        ])
        let local = LocalPostgres(port: port, directory: directory, binaries: binaries)
        atexit { LocalPostgres.stopAll() }
        started.withLock { $0.append(local) }
        return local
    }

    /// Starts the server on `port` and waits until it answers: true then; false when it exited because something else
    /// took the port meanwhile (unless this is the last attempt).
    /// - Throws: ``TestFailure`` with the server's log when it did not start for another reason, or within 60 s.
    private static func startServer(binaries: String, directory: String, port: Int, lastAttempt: Bool) async throws
        -> Bool
    {
        // The server itself, as a child that keeps running (not `pg_ctl start`, which daemonizes: Foundation never
        // reaps the `runuser` that ran it, and its termination handler never runs).
        let server = Process()
        let command = [
            "\(binaries)/postgres", "-D", "\(directory)/data", "-p", "\(port)", "-k", directory,
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c",
            "lc_messages=C",
            "-c", "ssl=on", "-c", "ssl_cert_file=\(directory)/tls/server.crt", "-c",
            "ssl_key_file=\(directory)/tls/server.key",
        ]
        server.executableURL = URL(fileURLWithPath: getuid() == 0 ? "/usr/sbin/runuser" : command[0])
        server.arguments = getuid() == 0 ? ["-u", "postgres", "--"] + command : Array(command.dropFirst())
        _ = FileManager.default.createFile(atPath: "\(directory)/log", contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(directory)/log"))
        server.standardOutput = log
        server.standardError = log
        server.standardInput = FileHandle.nullDevice
        try server.run()
        try? log.close()  // the server has its own copy
        let ready = ContinuousClock.now + .seconds(60)
        while true {
            if (try? await run(["\(binaries)/pg_isready", "-h", directory, "-p", "\(port)", "-q"])) != nil { break }
            guard ContinuousClock.now < ready, server.isRunning else {
                let text = (try? String(contentsOfFile: "\(directory)/log", encoding: .utf8)) ?? ""
                if !server.isRunning, !lastAttempt, text.contains("Address already in use") { return false }
                throw TestFailure("PostgreSQL did not start: \(text)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return true
    }

    private static let started = Mutex<[LocalPostgres]>([])

    /// A root, a server certificate it signs for 127.0.0.1 and localhost (its key readable by the server only), and
    /// another root, made with openssl as the server's user.
    private static func makeCertificates(in folder: String) async throws {
        try await run(["/bin/mkdir", "-p", folder])
        let san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
        for command in [
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout root.key -out root.crt -days 2 -subj /CN=warren-test-root",
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2 -subj /CN=another-root",
            "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost",
            "printf '%s\\n' '\(san)' > san.ext",
            "openssl x509 -req -in server.csr -CA root.crt -CAkey root.key -CAcreateserial -out server.crt -days 2 -extfile san.ext",
            "chmod 600 server.key",
        ] {
            try await run(["/bin/sh", "-c", "cd \(folder) && \(command)"])
        }
    }

    /// At exit: stop each server, blocking (no task runs any more), and remove its folder.
    private static func stopAll() {
        for server in started.withLock({ $0 }) {
            let stop = Process()
            stop.executableURL = URL(fileURLWithPath: getuid() == 0 ? "/usr/sbin/runuser" : "\(server.binaries)/pg_ctl")
            stop.arguments =
                (getuid() == 0 ? ["-u", "postgres", "--", "\(server.binaries)/pg_ctl"] : [])
                + ["-D", "\(server.directory)/data", "-m", "immediate", "-w", "stop"]
            stop.standardOutput = FileHandle.nullDevice
            stop.standardError = FileHandle.nullDevice
            if (try? stop.run()) != nil { stop.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: server.directory)
        }
    }

    /// Runs a command (as `postgres` when this process is root), failing with its output. (Through files: `pg_ctl
    /// start` leaves the server running with the descriptors it inherited, which a pipe would keep open.)
    private static func run(_ command: [String], asPostgres: Bool = true) async throws {
        let root = getuid() == 0 && asPostgres
        let run = try await runProcess(
            root ? "/usr/sbin/runuser" : command[0],
            root ? ["-u", "postgres", "--"] + command : Array(command.dropFirst()))
        guard run.status == 0 else { throw TestFailure("\(command.joined(separator: " ")): \(run)") }
    }
}

/// A TCP port nothing listens on now on 127.0.0.1 (the system's choice for port 0), for a server that must be told
/// its port.
package func freeTCPPort() throws -> Int {
    let socket = try boundLoopbackSocket()
    defer { close(socket) }
    return try localPort(of: socket)
}

/// A server that takes connections on 127.0.0.1 (the kernel completes the handshake into its backlog) and never
/// reads or answers: a database or broker that hangs.
package final class SilentListener: Sendable {
    package let port: Int
    private let socket: Int32

    package init() throws {
        socket = try boundLoopbackSocket()
        guard listen(socket, 64) == 0 else {
            close(socket)
            throw TestFailure("listen() failed")
        }
        port = try localPort(of: socket)
    }

    deinit { close(socket) }
}

private func boundLoopbackSocket() throws -> Int32 {
    let socket = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socket >= 0 else { throw TestFailure("socket() failed") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard bound == 0 else {
        close(socket)
        throw TestFailure("bind() failed")
    }
    return socket
}

private func localPort(of socket: Int32) throws -> Int {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
    }
    guard named == 0 else { throw TestFailure("getsockname() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}
