import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where RabbitMQ's scripts are.
struct RabbitMQInstallation: Sendable, Codable {
    var server: String
    var rabbitmqctl: String

    /// Looks in `WARREN_RABBITMQ_BIN`, Debian's `/usr/lib/rabbitmq/bin` (whose scripts run as the calling user, unlike
    /// the `/usr/sbin` wrappers), Homebrew's folders, then `PATH`.
    static func find() throws -> RabbitMQInstallation {
        let environment = ProcessInfo.processInfo.environment
        var folders = [
            environment["WARREN_RABBITMQ_BIN"], "/usr/lib/rabbitmq/bin", "/opt/homebrew/sbin", "/usr/local/sbin",
        ]
        .compactMap { $0 }
        folders += (environment["PATH"] ?? "").split(separator: ":").map(String.init)
        for folder in folders {
            let server = "\(folder)/rabbitmq-server"
            let ctl = "\(folder)/rabbitmqctl"
            if FileManager.default.isExecutableFile(atPath: server), FileManager.default.isExecutableFile(atPath: ctl) {
                return RabbitMQInstallation(server: server, rabbitmqctl: ctl)
            }
        }
        throw LocalBrokerError(
            .notInstalled,
            "rabbitmq-server was not found. Install it (Debian/Ubuntu: apt-get install rabbitmq-server; macOS: brew install rabbitmq), "
                + "or set WARREN_RABBITMQ_BIN to the folder holding rabbitmq-server and rabbitmqctl.")
    }
}

/// What `attach(dataDirectory:)` needs to find a running node again.
struct LocalBrokerState: Codable {
    var nodeName: String
    var port: Int
    var tlsPort: Int?
    var managementPort: Int?
    var distributionPort: Int
    var installation: RabbitMQInstallation
    /// The node's own variables only (its name, ports, folders): never the rest of the environment of the process
    /// that started it, which may hold secrets. Whoever attaches adds its own environment (``LocalBrokerLauncher/nodeEnvironment(_:)``).
    var environment: [String: String]
    var removeDataOnStop: Bool
}

struct LocalBrokerLauncher {
    var configuration: LocalBrokerConfiguration

    static let stateFileName = "warren-local-broker.json"

    func launch() async throws -> LocalBroker {
        let installation = try RabbitMQInstallation.find()
        let shortName = configuration.nodeName ?? "warren-\(UUID().uuidString.prefix(8).lowercased())"
        let nodeName = "\(shortName)@localhost"
        let createdDirectory = configuration.dataDirectory == nil
        let directory =
            configuration.dataDirectory
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("warren-broker-\(shortName)").path
        try FileManager.default.createDirectory(atPath: "\(directory)/log", withIntermediateDirectories: true)

        var reserved = Set<Int>()
        let port = try configuration.port ?? Self.freePort(avoiding: &reserved, alsoFree: 20000)
        reserved.insert(port)
        let distributionPort = port + 20000
        let tlsPort = try configuration.tls.map { _ in try Self.freePort(avoiding: &reserved) }
        let managementPort =
            try configuration.plugins.contains("rabbitmq_management") ? Self.freePort(avoiding: &reserved) : nil

        try writeConfiguration(directory: directory, tlsPort: tlsPort, managementPort: managementPort)
        if let cookie = configuration.erlangCookie {
            let path = "\(directory)/.erlang.cookie"
            try? FileManager.default.removeItem(atPath: path)
            guard
                FileManager.default.createFile(
                    atPath: path, contents: Data(cookie.utf8), attributes: [.posixPermissions: 0o400])
            else {
                throw LocalBrokerError(.startupFailed, "could not write the Erlang cookie in \(directory)")
            }
        }

        let loopbackOnly = "-kernel inet_dist_use_interface {127,0,0,1}"
        let own: [String: String] = [
            "HOME": directory,  // the Erlang cookie lives here; rabbitmqctl must see the same one
            "RABBITMQ_NODENAME": nodeName,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": "\(port)",
            "RABBITMQ_DIST_PORT": "\(distributionPort)",
            "RABBITMQ_MNESIA_BASE": "\(directory)/mnesia",
            "RABBITMQ_LOG_BASE": "\(directory)/log",
            "RABBITMQ_ENABLED_PLUGINS_FILE": "\(directory)/enabled_plugins",
            "RABBITMQ_CONFIG_FILE": "\(directory)/rabbitmq",
            "RABBITMQ_ADVANCED_CONFIG_FILE": "\(directory)/advanced.config",
            "RABBITMQ_CONF_ENV_FILE": "\(directory)/rabbitmq-env.conf",
            "RABBITMQ_PID_FILE": "\(directory)/rabbitmq.pid",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": loopbackOnly,
            "RABBITMQ_CTL_ERL_ARGS": loopbackOnly,
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_CRASH_DUMP": "\(directory)/erl_crash.dump",
            "WARREN_BROKER_DIR": directory,
            "WARREN_REMOVE_DATA": (createdDirectory && configuration.removeDataOnStop) ? "1" : "0",
            "WARREN_RABBITMQ_SERVER": installation.server,
            "WARREN_RABBITMQCTL": installation.rabbitmqctl,
        ]
        let environment = Self.nodeEnvironment(own)

        let broker = LocalBroker(
            nodeName: nodeName, port: port, tlsPort: tlsPort, managementPort: managementPort,
            distributionPort: distributionPort, dataDirectory: directory, installation: installation,
            environment: environment, removeDataOnStop: createdDirectory && configuration.removeDataOnStop)

        try startProcess(directory: directory, environment: environment)
        do {
            let seconds = max(1, configuration.startupTimeout.components.seconds)
            try await broker.rabbitmqctl(
                ["wait", "\(directory)/rabbitmq.pid", "--timeout", "\(seconds)"],
                timeout: configuration.startupTimeout + .seconds(10))
            try await broker.waitUntilListening(timeout: .seconds(30))
        } catch {
            let log = Self.tail(of: "\(directory)/log/server.out") + Self.tail(of: "\(directory)/log/\(nodeName).log")
            try? await broker.stop()
            throw LocalBrokerError(
                .startupFailed, "RabbitMQ node \(nodeName) did not start: \(error)\n--- log ---\n\(log)")
        }
        let state = LocalBrokerState(
            nodeName: nodeName, port: port, tlsPort: tlsPort, managementPort: managementPort,
            distributionPort: distributionPort, installation: installation, environment: own,
            removeDataOnStop: broker.removeDataOnStop)
        // Readable by its owner only: it names the node and its ports (the Erlang cookie sits in the same folder).
        let stateFile = "\(directory)/\(Self.stateFileName)"
        try JSONEncoder().encode(state).write(to: URL(fileURLWithPath: stateFile))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: stateFile)
        return broker
    }

    /// This process's environment with the node's own variables (`own`) on top, and without the `RABBITMQ_` variables of a
    /// system-wide RabbitMQ, which must not leak into this node.
    static func nodeEnvironment(_ own: [String: String]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.merging(own) { _, new in new }
        for key in environment.keys where key.hasPrefix("RABBITMQ_") && own[key] == nil { environment[key] = nil }
        return environment
    }

    static func attach(dataDirectory: String) throws -> LocalBroker? {
        let url = URL(fileURLWithPath: "\(dataDirectory)/\(stateFileName)")
        guard let data = try? Data(contentsOf: url) else { return nil }
        let state = try JSONDecoder().decode(LocalBrokerState.self, from: data)
        return LocalBroker(
            nodeName: state.nodeName, port: state.port, tlsPort: state.tlsPort, managementPort: state.managementPort,
            distributionPort: state.distributionPort, dataDirectory: dataDirectory, installation: state.installation,
            environment: nodeEnvironment(state.environment), removeDataOnStop: state.removeDataOnStop)
    }

    private func writeConfiguration(directory: String, tlsPort: Int?, managementPort: Int?) throws {
        var lines = [
            "# Written by Warren's LocalBroker for a throwaway node.",
            "log.file.level = info",
            "log.console = false",
        ]
        if let tlsPort, let tls = configuration.tls {
            lines += [
                "listeners.ssl.1 = 127.0.0.1:\(tlsPort)",
                "ssl_options.cacertfile = \(tls.caCertificateFile)",
                "ssl_options.certfile = \(tls.certificateFile)",
                "ssl_options.keyfile = \(tls.keyFile)",
                "ssl_options.verify = \(tls.verifyClients ? "verify_peer" : "verify_none")",
                "ssl_options.fail_if_no_peer_cert = \(tls.requireClientCertificate)",
            ]
        }
        if let managementPort {
            lines += ["management.tcp.ip = 127.0.0.1", "management.tcp.port = \(managementPort)"]
        }
        lines += configuration.extraConfiguration
        try (lines.joined(separator: "\n") + "\n").write(
            toFile: "\(directory)/rabbitmq.conf", atomically: true, encoding: .utf8)
        let plugins = "[" + configuration.plugins.joined(separator: ",") + "].\n"
        try plugins.write(toFile: "\(directory)/enabled_plugins", atomically: true, encoding: .utf8)
        try "[].\n".write(toFile: "\(directory)/advanced.config", atomically: true, encoding: .utf8)
        try "".write(toFile: "\(directory)/rabbitmq-env.conf", atomically: true, encoding: .utf8)
    }

    /// Starts `rabbitmq-server` under a small shell watchdog in a session of its own (see
    /// `ProcessRunner.spawnDetached` for why not `Process`). With `stopWhenOwnerExits`, the
    /// watchdog stops the node once the owning process is gone, so a crashed test run leaves no broker behind.
    private func startProcess(directory: String, environment: [String: String]) throws {
        let script = """
            #!/bin/bash
            # Warren LocalBroker watchdog: runs the node; stops it when the owner process ($1, 0 for none) is gone.
            # First close every inherited descriptor above 2: a node holding its starter's output pipe open would
            # keep that pipe's reader (a shell, `swift package`) waiting for an end of file that never comes.
            for fd in /dev/fd/*; do
              fd=${fd##*/}
              if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
            done 2>/dev/null
            owner="$1"
            cd "$WARREN_BROKER_DIR" || exit 1
            "$WARREN_RABBITMQ_SERVER" >>"$WARREN_BROKER_DIR/log/server.out" 2>&1 &
            server=$!
            if [ "$owner" -gt 0 ]; then
              while kill -0 "$server" 2>/dev/null; do
                if ! kill -0 "$owner" 2>/dev/null; then
                  "$WARREN_RABBITMQCTL" -n "$RABBITMQ_NODENAME" stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 &
                  stopper=$!
                  sleep 20
                  kill -9 "$stopper" 2>/dev/null
                  if [ -f "$RABBITMQ_PID_FILE" ]; then kill -9 "$(cat "$RABBITMQ_PID_FILE")" 2>/dev/null; fi
                  if [ "$WARREN_REMOVE_DATA" = 1 ]; then rm -rf "$WARREN_BROKER_DIR"; fi
                  exit 0
                fi
                sleep 1
              done
            fi
            wait "$server"

            """
        let scriptPath = "\(directory)/run-node.sh"
        try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        let owner = configuration.stopWhenOwnerExits ? getpid() : 0

        _ = try ProcessRunner.spawnDetached("/bin/bash", [scriptPath, "\(owner)"], environment: environment)
    }

    /// Ports handed out by this process, so brokers started at the same time never pick the same one (a port is only
    /// bound once the node runs, seconds later).
    private static let handedOut = Mutex<Set<Int>>([])

    /// A free port on 127.0.0.1 in 20000..<40000. With `alsoFree`, the port at that offset must be free too (the
    /// Erlang distribution port sits 20000 above the AMQP port, and `rabbitmqctl` uses 10000 above that).
    static func freePort(avoiding reserved: inout Set<Int>, alsoFree offset: Int? = nil) throws -> Int {
        let range = offset == nil ? 20000..<40000 : 20000..<25000
        for _ in 0..<500 {
            let candidate = Int.random(in: range)
            guard !reserved.contains(candidate), ProcessRunner.isFree(port: candidate) else { continue }
            if let offset, !ProcessRunner.isFree(port: candidate + offset) { continue }
            let claimed = handedOut.withLock { ports in
                guard !ports.contains(candidate), offset.map({ !ports.contains(candidate + $0) }) ?? true else {
                    return false
                }
                ports.insert(candidate)
                if let offset { ports.insert(candidate + offset) }
                return true
            }
            guard claimed else { continue }
            reserved.insert(candidate)
            return candidate
        }
        throw LocalBrokerError(.noFreePort, "no free port found on 127.0.0.1")
    }

    static func tail(of path: String, lines: Int = 40) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }
}
