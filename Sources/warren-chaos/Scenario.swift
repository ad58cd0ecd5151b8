import Foundation
import Logging
import Synchronization
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenLocalBroker

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One fault, end to end: a worker process, a publisher in this process, the fault once a third of the messages are
/// handled, then the ledger (ids handled) and the dead letters against the ids the broker confirmed.
struct Scenario {
    let fault: Fault
    let nodes: ChaosNodes
    let messages: Int
    let directory: String
    let redeliveryLimit: Int
    /// Messages per second the publisher sends.
    let rate: Int

    static let poisonID = "poison"

    func run() async throws -> ScenarioResult {
        let clock = ContinuousClock()
        let started = clock.now
        let queue = "chaos.\(fault.rawValue).\(UUID().uuidString.prefix(8).lowercased())"
        let ledgerPath = "\(directory)/\(fault.rawValue).ledger"
        _ = FileManager.default.createFile(atPath: ledgerPath, contents: nil)
        print("\(fault.rawValue): queue \(queue)")

        var arguments = [
            "worker", "--queue", queue, "--ledger", ledgerPath, "--redelivery-limit",
            "\(fault == .poison ? redeliveryLimit : 10)",
        ]
        for url in nodes.urls { arguments += ["--url", url] }
        if nodes.quorum { arguments.append("--quorum") }
        if fault == .poison { arguments += ["--poison-id", Self.poisonID] }
        if fault == .hostile { arguments += ["--max-bytes", "\(HostileInput.maximumBytes)"] }
        let workerLog = "\(directory)/\(fault.rawValue).worker.log"
        let worker = WorkerSupervisor(arguments: arguments, logPath: workerLog)
        try worker.launch()
        let supervision = Task { await worker.supervise() }
        defer { supervision.cancel() }
        try await waitForConsumer(queue)

        var logger = Logger(label: "chaos.publisher")
        logger.logLevel = .warning
        let transport = RabbitMQTransport(
            endpoints: try nodes.urls.reversed().map { try AMQPEndpoint(uri: $0) },
            connectionName: "warren-chaos-publisher",
            queueType: nodes.quorum ? .quorum : .classic, publishRecoveryTimeout: .seconds(120), logger: logger)
        try await transport.start()
        let publisher = WarrenPublisher(transport: transport, appID: "warren-chaos")

        let memory = MemorySampler()
        let sampling = Task {
            while !Task.isCancelled {
                if let pid = worker.pid { memory.sample(pid: pid) }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        defer { sampling.cancel() }

        var confirmed = Set<String>()
        var publishErrors = 0
        if fault == .poison {
            try await publisher.publish(ChaosJob(n: -1), to: .queue(queue), messageID: Self.poisonID)
            confirmed.insert(Self.poisonID)
        }
        let ledger = LedgerReader(path: ledgerPath)
        let total = messages
        let sent = Counter()
        // Paced, so that messages are still flowing (published, queued, being handled) when the fault lands.
        let lanes = 4
        let laneInterval = Duration.seconds(Double(lanes) / Double(max(1, rate)))
        let outcome = try await withThrowingTaskGroup(of: (Set<String>, Int).self) { group in
            for lane in 0..<lanes {
                group.addTask {
                    var ok = Set<String>()
                    var errors = 0
                    var next = ContinuousClock.now
                    for n in stride(from: lane, to: total, by: lanes) {
                        next = next.advanced(by: laneInterval)
                        do {
                            if fault == .hostile {
                                let (body, properties) = HostileInput.message(n, id: "m-\(n)")
                                try await transport.publish(body, to: .queue(queue), properties: properties)
                                ok.insert("m-\(n)")
                            } else {
                                ok.insert(
                                    try await publisher.publish(ChaosJob(n: n), to: .queue(queue), messageID: "m-\(n)"))
                            }
                        } catch {
                            errors += 1
                        }
                        sent.value.add(1, ordering: .relaxed)
                        try await Task.sleep(until: next)
                    }
                    return (ok, errors)
                }
            }
            group.addTask {
                let deadline = ContinuousClock.now.advanced(by: .seconds(120))
                while sent.value.load(ordering: .relaxed) < total / 3, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                try await inject(worker: worker)
                return ([], 0)
            }
            var ok = Set<String>()
            var errors = 0
            for try await (lane, laneErrors) in group {
                ok.formUnion(lane)
                errors += laneErrors
            }
            return (ok, errors)
        }
        confirmed.formUnion(outcome.0)
        publishErrors = outcome.1
        await transport.close()

        // Wait until every confirmed id was handled or parked, or give up after two minutes.
        var handled: [String: Int] = [:]
        var deadLetters: [String: String] = [:]
        let deadline = clock.now.advanced(by: .seconds(120))
        while true {
            handled = ledger.read()
            let missing = confirmed.subtracting(handled.keys)
            if missing.isEmpty { break }
            deadLetters = (try? await readDeadLetters(queue)) ?? deadLetters
            if missing.isSubset(of: deadLetters.keys) || clock.now > deadline { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        // A broker fault must have reached the worker: wait for its log to say it recovered.
        var reconnects = Self.occurrences(of: "connection recovered", in: workerLog)
        while fault.hitsTheWorkersConnection, reconnects == 0, clock.now < deadline.advanced(by: .seconds(60)) {
            try await Task.sleep(for: .milliseconds(200))
            reconnects = Self.occurrences(of: "connection recovered", in: workerLog)
        }
        await worker.stop()
        handled = ledger.read()
        deadLetters = (try? await readDeadLetters(queue)) ?? deadLetters

        let parked = confirmed.intersection(deadLetters.keys)
        let lost = confirmed.subtracting(handled.keys).subtracting(parked)
        var reasons: [String: Int] = [:]
        for id in parked { reasons[deadLetters[id] ?? "?", default: 0] += 1 }
        var passed = lost.isEmpty
        var note = ""
        if fault.hitsTheWorkersConnection && reconnects == 0 {
            passed = false
            note = "the worker never lost and recovered its connection: the fault did not happen as planned"
        }
        if fault == .workerKill && worker.restarts == 0 {
            passed = false
            note = "the worker was not killed"
        }
        if fault == .hostile {
            let (early, late) = memory.peaks()
            let mebibyte = 1_048_576
            // Bounded: a worker may hold a prefetch's worth of the largest bodies (twice: the socket buffer and the
            // delivery) over its idle size. Flat: over a long run (the early peak includes the allocator warming up
            // to those bodies), the second half's peak stays within 25% of the first's.
            let ceiling = 32 * mebibyte + 2 * 20 * HostileInput.largestBody + 16 * mebibyte
            let flat = messages < 4000 || late <= early * 5 / 4 + 4 * mebibyte
            passed = passed && late <= ceiling && flat
            note =
                "worker peak RSS \(early / mebibyte) MiB over the first half of the run, \(late / mebibyte) MiB over the second"
                + " (bound \(ceiling / mebibyte) MiB)" + (late > ceiling ? " OVER THE BOUND" : "")
                + (flat ? "" : " GROWING")
                + "; dead letters: \(reasons.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"
        } else if fault == .poison {
            let poisonParked = deadLetters[Self.poisonID] == DeadLetterReason.Kind.redeliveryLimit.rawValue
            passed = passed && poisonParked && handled[Self.poisonID] == nil
            note =
                "poison message \(poisonParked ? "dead-lettered (redelivery-limit)" : "NOT dead-lettered") after "
                + "\(worker.restarts) crashes (limit \(redeliveryLimit)); \(parked.count - (poisonParked ? 1 : 0)) other messages "
                + "prefetched behind it were counted with it and dead-lettered"
        } else if !parked.isEmpty {
            note = "dead letters: \(reasons)"
        }
        if !lost.isEmpty { note += (note.isEmpty ? "" : "; ") + "lost e.g. \(lost.sorted().prefix(5))" }
        let result = ScenarioResult(
            fault: fault.rawValue, published: confirmed.count, publishErrors: publishErrors,
            handled: confirmed.intersection(handled.keys).count, deadLettered: parked.count, deadLetterReasons: reasons,
            lost: lost.count, duplicates: handled.values.reduce(0) { $0 + max(0, $1 - 1) },
            workerRestarts: worker.restarts,
            workerReconnects: reconnects, seconds: (clock.now - started).seconds, passed: passed, note: note)
        print(
            "\(fault.rawValue): published \(result.published), handled \(result.handled), dead-lettered \(result.deadLettered), lost \(result.lost), duplicates \(result.duplicates)"
        )
        return result
    }

    static func occurrences(of text: String, in path: String) -> Int {
        let log = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return log.components(separatedBy: text).count - 1
    }

    private func inject(worker: WorkerSupervisor) async throws {
        let broker = nodes.brokers[0]
        switch fault {
        case .brokerRestart:
            try await broker.restart()
        case .stopApp:
            try await broker.stopApp()
            try await Task.sleep(for: .seconds(3))
            try await broker.startApp()
        case .freeze:
            await broker.pause()
            try await Task.sleep(for: .seconds(6))
            broker.resume()
        case .workerKill:
            worker.kill()
        case .nodeKill:
            broker.kill()
        case .poison, .hostile:
            break  // the messages are the fault
        }
        print("\(fault.rawValue): fault injected")
    }

    /// Any node that accepts connections.
    private func connect() async throws -> AMQPConnection {
        var logger = Logger(label: "chaos.probe")
        logger.logLevel = .critical
        let live = nodes.brokers.filter(\.isListening).map(\.amqpURL)
        return try await AMQPConnection.connect(
            to: try live.map { try AMQPEndpoint(uri: $0) }, connectionName: "warren-chaos-probe", logger: logger)
    }

    private func waitForConsumer(_ queue: String) async throws {
        let deadline = ContinuousClock.now.advanced(by: .seconds(60))
        while ContinuousClock.now < deadline {
            if let connection = try? await connect() {
                let status = try? await connection.openChannel().queueStatus(queue)
                await connection.close()
                if let status, status.consumerCount > 0 { return }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ChaosError("the worker did not start consuming \(queue)")
    }

    /// Message id → `x-warren-reason` of every dead letter of `queue` (read, then returned to the queue).
    private func readDeadLetters(_ queue: String) async throws -> [String: String] {
        let connection = try await connect()
        defer { Task { await connection.close() } }
        let channel = try await connection.openChannel()
        var letters: [String: String] = [:]
        while let result = try await channel.get(queue: WarrenTopology(queue: queue).deadLetterQueue) {
            let properties = result.delivery.properties
            letters[properties.messageID ?? "?"] =
                DeadLetter(body: [], properties: properties).reason?.kind.rawValue ?? "?"
        }
        try await channel.close()
        return letters
    }
}

final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

struct ChaosError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Counts the ids in a ledger file.
struct LedgerReader: Sendable {
    let path: String

    func read() -> [String: Int] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        var counts: [String: Int] = [:]
        for line in data.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
            counts[String(decoding: line, as: UTF8.self), default: 0] += 1
        }
        return counts
    }
}

/// Runs the worker process and starts it again whenever it dies (killed, or crashed by the poison message) until
/// ``stop()``.
final class WorkerSupervisor: Sendable {
    private let arguments: [String]
    private let logPath: String
    private let state = Mutex<(pid: pid_t?, restarts: Int, supervising: Bool)>((nil, 0, true))

    init(arguments: [String], logPath: String) {
        self.arguments = arguments
        self.logPath = logPath
    }

    var restarts: Int { state.withLock { $0.restarts } }
    var pid: pid_t? { state.withLock { $0.pid } }

    func launch() throws {
        let executable = Bundle.main.executablePath ?? CommandLine.arguments[0]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
        }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard status == 0 else { throw ChaosError("could not start the worker: \(String(cString: strerror(status)))") }
        state.withLock { $0.pid = pid }
    }

    /// Reaps the worker when it exits and starts it again while supervising.
    func supervise() async {
        while !Task.isCancelled {
            let pid = state.withLock { $0.pid }
            if let pid {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    let again = state.withLock { state in
                        state.pid = nil
                        if state.supervising { state.restarts += 1 }
                        return state.supervising
                    }
                    if again {
                        try? await Task.sleep(for: .milliseconds(300))
                        try? launch()
                    }
                }
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
    }

    func kill() {
        if let pid = state.withLock({ $0.pid }) { sendSignal(pid, SIGKILL) }
    }

    /// SIGTERM (a graceful drain), then SIGKILL after 20 s.
    func stop() async {
        let pid = state.withLock { state in
            state.supervising = false
            return state.pid
        }
        guard let pid else { return }
        sendSignal(pid, SIGTERM)
        let deadline = ContinuousClock.now.advanced(by: .seconds(20))
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if ContinuousClock.now > deadline { sendSignal(pid, SIGKILL) }
            try? await Task.sleep(for: .milliseconds(50))
        }
        state.withLock { $0.pid = nil }
    }
}

/// Free function: inside ``WorkerSupervisor`` the name `kill` is its own method.
private func sendSignal(_ pid: pid_t, _ signal: Int32) {
    _ = kill(pid, signal)
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Peak resident memory of a process, for the first and the second half of the samples.
final class MemorySampler: Sendable {
    private let samples = Mutex<[Int]>([])

    /// Reads `VmRSS` from `/proc/<pid>/status` (Linux; elsewhere nothing is sampled).
    func sample(pid: pid_t) {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return }
        samples.withLock { $0.append(kilobytes * 1024) }
    }

    /// Bytes: the peak of the first half of the samples and of the second.
    func peaks() -> (early: Int, late: Int) {
        let all = samples.withLock { $0 }
        let middle = all.count / 2
        return (all[..<middle].max() ?? 0, all[middle...].max() ?? 0)
    }
}
