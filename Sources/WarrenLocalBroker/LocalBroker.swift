import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A throwaway RabbitMQ node: a real `rabbitmq-server` process on 127.0.0.1 with its own node name, data directory
/// and free ports, for integration tests and local development. Nothing is shared with a system-wide RabbitMQ.
///
/// ```swift
/// let broker = try await LocalBroker.start()
/// let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: broker.amqpURL))
/// …
/// try await broker.stop()
/// ```
///
/// For a whole test run, ``shared()`` starts one node on first use and stops it when the process exits.
/// Needs RabbitMQ installed (`apt-get install rabbitmq-server`, `brew install rabbitmq`); starting takes a few
/// seconds. The fault-injection methods (``stopApp()``, ``pause()``, ``kill()``…) let tests simulate outages.
public final class LocalBroker: Sendable, CustomStringConvertible {
    /// The node's full name, e.g. `warren-1a2b3c@localhost`.
    public let nodeName: String
    /// The plain AMQP port on 127.0.0.1.
    public let port: Int
    /// The TLS port, when a TLS listener was configured.
    public let tlsPort: Int?
    /// The management UI/API port, when `rabbitmq_management` is enabled.
    public let managementPort: Int?
    /// The node's data directory.
    public let dataDirectory: String
    /// The Erlang distribution port (used by `rabbitmqctl` and clustering).
    public let distributionPort: Int

    let installation: RabbitMQInstallation
    let environment: [String: String]
    let removeDataOnStop: Bool
    private let stopped = Mutex(false)

    /// `amqp://guest:guest@127.0.0.1:PORT/` (the `guest` user may connect because the node listens on loopback only).
    public var amqpURL: String { "amqp://guest:guest@127.0.0.1:\(port)/" }

    /// `amqps://guest:guest@localhost:TLSPORT/`, when a TLS listener was configured.
    public var amqpsURL: String? { tlsPort.map { "amqps://guest:guest@localhost:\($0)/" } }

    public var description: String { "LocalBroker(\(nodeName) on 127.0.0.1:\(port))" }

    init(
        nodeName: String, port: Int, tlsPort: Int?, managementPort: Int?, distributionPort: Int, dataDirectory: String,
        installation: RabbitMQInstallation, environment: [String: String], removeDataOnStop: Bool
    ) {
        self.nodeName = nodeName
        self.port = port
        self.tlsPort = tlsPort
        self.managementPort = managementPort
        self.distributionPort = distributionPort
        self.dataDirectory = dataDirectory
        self.installation = installation
        self.environment = environment
        self.removeDataOnStop = removeDataOnStop
    }

    /// Starts a node and waits until it accepts AMQP connections.
    /// - Throws: ``LocalBrokerError`` (``LocalBrokerError/Code/notInstalled`` with how to install RabbitMQ;
    ///   ``LocalBrokerError/Code/startupFailed`` with the end of the node's log).
    public static func start(_ configuration: LocalBrokerConfiguration = LocalBrokerConfiguration()) async throws
        -> LocalBroker
    {
        do {
            return try await LocalBrokerLauncher(configuration: configuration).launch()
        } catch let error as LocalBrokerError
            where error.code == .startupFailed && configuration.port == nil
            && configuration.nodeName == nil && configuration.dataDirectory == nil
        {
            // Another process may have taken a port between the check and the node binding it: try once more with
            // fresh ports, a fresh name and a fresh directory.
            return try await LocalBrokerLauncher(configuration: configuration).launch()
        }
    }

    /// Reattaches to a node started earlier (by ``start(_:)`` in another process, e.g. the `local-broker` plugin),
    /// from the state file in its data directory; `nil` when there is none.
    public static func attach(dataDirectory: String) throws -> LocalBroker? {
        try LocalBrokerLauncher.attach(dataDirectory: dataDirectory)
    }

    /// Stops the node (`rabbitmqctl stop`, or SIGKILL when it does not answer) and removes its data directory when
    /// it created one. Calling it again does nothing.
    public func stop() async throws {
        let first = stopped.withLock { stopped in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        resume()  // a paused node cannot stop itself
        let pidFile = "\(dataDirectory)/rabbitmq.pid"
        let result = try? await ProcessRunner.run(
            installation.rabbitmqctl, ["-n", nodeName, "stop", pidFile], environment: environment, timeout: .seconds(30)
        )
        if result?.status != 0 { signalNode(SIGKILL) }
        if removeDataOnStop { try? FileManager.default.removeItem(atPath: dataDirectory) }
    }

    /// Stops the RabbitMQ application inside the node (`rabbitmqctl stop_app`): every connection is closed and
    /// the ports stop accepting, as in a broker restart, until ``startApp()``.
    public func stopApp() async throws {
        try await rabbitmqctl(["stop_app"])
    }

    /// Starts the RabbitMQ application again after ``stopApp()``, and waits until it accepts connections.
    public func startApp() async throws {
        try await rabbitmqctl(["start_app"])
        try await waitUntilListening(timeout: .seconds(60))
    }

    /// Restarts the whole node, as a machine reboot would: the node stops (`rabbitmqctl stop`, or SIGKILL when it does
    /// not answer, or nothing when it was killed), then starts again on the same data directory, name and ports, so
    /// durable queues and persistent messages come back. Returns once it accepts connections. The restarted node stops
    /// when the calling process exits.
    /// - Throws: ``LocalBrokerError/Code/startupFailed`` when it does not come back within `timeout`.
    public func restart(timeout: Duration = .seconds(90)) async throws {
        resume()
        let pidFile = "\(dataDirectory)/rabbitmq.pid"
        if isListening {
            let result = try? await ProcessRunner.run(
                installation.rabbitmqctl, ["-n", nodeName, "stop", pidFile], environment: environment,
                timeout: .seconds(30))
            if result?.status != 0 { signalNode(SIGKILL) }
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(30))
        while isListening || beamProcessID.map(processIsAlive) == true, clock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
        }
        _ = try ProcessRunner.spawnDetached(
            "/bin/bash", ["\(dataDirectory)/run-node.sh", "\(getpid())"], environment: environment)
        let seconds = max(1, timeout.components.seconds)
        try await rabbitmqctl(["wait", pidFile, "--timeout", "\(seconds)"], timeout: timeout + .seconds(10))
        try await waitUntilListening(timeout: .seconds(30))
    }

    /// Freezes the node (SIGSTOP): sockets stay open but nothing answers, so only missed heartbeats reveal it.
    ///
    /// On Linux it returns once every thread of the node has stopped (at most about a second): a signal stops a
    /// thread running on another core only at its next entry into the kernel, and a frame sent meanwhile could still
    /// be answered.
    public func pause() async {
        signalNode(SIGSTOP)
        guard let pid = beamProcessID else { return }
        let deadline = ContinuousClock.now + .seconds(1)
        while !Self.allThreadsStopped(pid), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    /// Whether every thread of `pid` is stopped, from `/proc/<pid>/task/*/stat`; true where `/proc` does not exist.
    static func allThreadsStopped(_ pid: pid_t) -> Bool {
        guard let threads = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else {
            return true
        }
        return threads.allSatisfy { thread in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(thread)/stat", encoding: .utf8),
                let afterName = stat.lastIndex(of: ")")
            else { return true }  // the thread is gone
            // The state is the first field after the parenthesised command name: T (stopped) or t (traced).
            let state = stat[stat.index(after: afterName)...].drop(while: { $0 == " " }).first
            return state == "T" || state == "t"
        }
    }

    /// Unfreezes a node frozen by ``pause()`` (SIGCONT).
    public func resume() {
        signalNode(SIGCONT)
    }

    /// Kills the node outright (SIGKILL), as a crashed machine would. Its data directory is kept until ``stop()``.
    public func kill() {
        signalNode(SIGKILL)
    }

    func signalNode(_ signal: Int32) {
        if let pid = beamProcessID { sendSignal(pid, signal) }
    }

    /// Runs `rabbitmqctl` against this node and returns what it printed.
    /// - Throws: ``LocalBrokerError/Code/commandFailed`` with the output, when it exits non-zero.
    @discardableResult
    public func rabbitmqctl(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> String {
        let output = try await ProcessRunner.run(
            installation.rabbitmqctl, ["-n", nodeName] + arguments, environment: environment, timeout: timeout)
        guard output.status == 0 else {
            throw LocalBrokerError(
                .commandFailed,
                "rabbitmqctl \(arguments.joined(separator: " ")) failed (\(output.status)): \(output.text)")
        }
        return output.text
    }

    /// Whether the node accepts TCP connections on its AMQP port right now.
    public var isListening: Bool { ProcessRunner.isListening(port: port) }

    func waitUntilListening(timeout: Duration) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while !isListening {
            guard clock.now < deadline else {
                throw LocalBrokerError(.startupFailed, "\(nodeName) does not accept connections on port \(port)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// The Erlang VM's process id, from the node's pid file.
    public var beamProcessID: pid_t? {
        guard let text = try? String(contentsOfFile: "\(dataDirectory)/rabbitmq.pid", encoding: .utf8) else {
            return nil
        }
        return pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

extension LocalBroker {
    private static let sharedBrokers = SharedBrokers()

    /// One node per `key` for the whole process, started on first call (later calls wait for the same start) and
    /// stopped when the process exits. Meant for test suites: every test uses the same node, with its own queue
    /// names; a suite that injects node-wide faults asks for a key of its own.
    /// - Parameter configuration: used by the first call for `key` only.
    public static func shared(
        _ key: String = "default", configuration: LocalBrokerConfiguration = LocalBrokerConfiguration()
    ) async throws -> LocalBroker {
        try await sharedBrokers.get(key, configuration)
    }
}

/// Starts each process-wide broker once, and registers its stop at exit.
private final class SharedBrokers: Sendable {
    private let tasks = Mutex<[String: Task<LocalBroker, any Error>]>([:])

    func get(_ key: String, _ configuration: LocalBrokerConfiguration) async throws -> LocalBroker {
        let task = tasks.withLock { tasks in
            if let task = tasks[key] { return task }
            // A join: every caller of `shared` for this key awaits this one start (whoever asked first may be cancelled
            // while others wait); it ends with the start, and the node it made is stopped at exit.
            let started = Task { () throws -> LocalBroker in
                let broker = try await LocalBroker.start(configuration)
                registerExitStop(broker)
                return broker
            }
            tasks[key] = started
            return started
        }
        return try await task.value
    }
}

private let brokersToStopAtExit = Mutex<[LocalBroker]>([])

/// Stops `broker` when the process exits normally (the watchdog covers a crash).
func registerExitStop(_ broker: LocalBroker) {
    let first = brokersToStopAtExit.withLock { brokers in
        brokers.append(broker)
        return brokers.count == 1
    }
    guard first else { return }
    atexit {
        // At exit no task runs any more: stop synchronously, which blocks only this exiting thread.
        for broker in brokersToStopAtExit.withLock({ $0 }) { broker.stopBlocking() }
    }
}

extension LocalBroker {
    /// Stops the node from a context that may block (process exit).
    func stopBlocking() {
        let first = stopped.withLock { stopped in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        resume()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: installation.rabbitmqctl)
        process.arguments = ["-n", nodeName, "stop", "\(dataDirectory)/rabbitmq.pid"]
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        var stoppedCleanly = false
        if (try? process.run()) != nil {
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning && Date() < deadline { usleep(50_000) }
            if process.isRunning { process.terminate() } else { stoppedCleanly = process.terminationStatus == 0 }
        }
        if !stoppedCleanly { signalNode(SIGKILL) }
        if removeDataOnStop { try? FileManager.default.removeItem(atPath: dataDirectory) }
    }
}

private func processIsAlive(_ pid: pid_t) -> Bool {
    kill(pid, 0) == 0
}

private func sendSignal(_ pid: pid_t, _ signal: Int32) {
    _ = kill(pid, signal)
}
