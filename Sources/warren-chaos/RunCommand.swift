import ArgumentParser
import Foundation
import Logging
import Warren
import WarrenAMQP
import WarrenLocalBroker

/// A fault the chaos run injects while messages flow.
enum Fault: String, CaseIterable, ExpressibleByArgument, Sendable {
    /// The whole node stops and starts again on its data (`rabbitmqctl stop`, then the node process again).
    case brokerRestart = "broker-restart"
    /// `rabbitmqctl stop_app`, 3 s, `start_app`: every connection drops, the ports close.
    case stopApp = "stop-app"
    /// SIGSTOP for 6 s, then SIGCONT: sockets stay open, nothing answers; only heartbeats reveal it.
    case freeze
    /// The worker process is killed with SIGKILL mid-batch and started again.
    case workerKill = "worker-kill"
    /// A three-node cluster with quorum queues; the node the worker is connected to is killed with SIGKILL.
    case nodeKill = "node-kill"
    /// One message crashes its worker every time it is handled; the worker is restarted each time, until the
    /// redelivery bound sends the message to the dead letters.
    case poison
    /// Every kind of bad input, over and over (bodies over the size limit, invalid UTF-8, JSON nested 50,000 deep,
    /// headers nested 100 deep, empty bodies, no type, an unknown content encoding): everything settles and the
    /// worker's memory stays flat.
    case hostile

    static let fast: [Fault] = [.stopApp, .workerKill, .poison, .hostile]

    /// Faults of the broker that every connection to it must notice.
    var hitsTheWorkersConnection: Bool {
        switch self {
        case .brokerRestart, .stopApp, .freeze, .nodeKill: true
        case .workerKill, .poison, .hostile: false
        }
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Runs the fault scenarios and prints published / handled / lost / duplicates for each.")

    @Option(
        parsing: .upToNextOption,
        help: "Faults to inject (default: all): \(Fault.allCases.map(\.rawValue).joined(separator: ", ")).")
    var faults: [Fault] = []
    @Flag(
        help:
            "The quick subset that `make test` runs: \(Fault.fast.map(\.rawValue).joined(separator: ", ")), fewer messages."
    )
    var fast = false
    @Option(help: "Messages published per scenario (default 2000, 600 with --fast).") var messages: Int?
    @Option(help: "Messages per second the publisher sends (default 500, 300 with --fast).") var rate: Int?
    @Option(help: "The redelivery bound of the poison scenario's worker.") var redeliveryLimit = 3

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
        let selected = faults.isEmpty ? (fast ? Fault.fast : Fault.allCases) : faults
        let count = messages ?? (fast ? 600 : 2000)
        let rate = rate ?? (fast ? 300 : 500)
        let workDirectory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "warren-chaos-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
        print(
            "warren-chaos: \(selected.map(\.rawValue).joined(separator: ", ")); \(count) messages each at \(rate)/s; logs in \(workDirectory)"
        )

        var rows: [ScenarioResult] = []
        let single = selected.filter { $0 != .nodeKill }
        if !single.isEmpty {
            let broker = try await LocalBroker.start()
            for fault in single {
                let nodes = ChaosNodes(brokers: [broker], quorum: false)
                rows.append(
                    try await Scenario(
                        fault: fault, nodes: nodes, messages: count, directory: workDirectory,
                        redeliveryLimit: redeliveryLimit, rate: rate
                    ).run())
            }
            try await broker.stop()
        }
        if selected.contains(.nodeKill) {
            print("starting a three-node cluster…")
            let cluster = try await LocalBrokerCluster.start(nodes: 3)
            let nodes = ChaosNodes(brokers: cluster.nodes, quorum: true)
            rows.append(
                try await Scenario(
                    fault: .nodeKill, nodes: nodes, messages: count, directory: workDirectory,
                    redeliveryLimit: redeliveryLimit, rate: rate
                ).run())
            try await cluster.stop()
        }

        print("")
        print(ScenarioResult.table(rows))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase  // the reasons' own names have no capitals to convert
        let summary = ChaosSummary(
            scenarios: rows, lost: rows.reduce(0) { $0 + $1.lost }, passed: rows.allSatisfy(\.passed))
        print(String(decoding: try encoder.encode(summary), as: UTF8.self))
        if !summary.passed { throw ExitCode(1) }
    }
}

struct ChaosSummary: Codable {
    var scenarios: [ScenarioResult]
    var lost: Int
    var passed: Bool
}

/// The nodes a scenario runs against.
struct ChaosNodes {
    var brokers: [LocalBroker]
    var quorum: Bool

    /// Heartbeats every 2 s, so a frozen broker is noticed within seconds.
    var urls: [String] { brokers.map { $0.amqpURL + "?heartbeat=2" } }
}

struct ScenarioResult: Codable {
    var fault: String
    /// Publishes the broker confirmed: the messages that must be handled.
    var published: Int
    /// Publishes whose caller got an error (never counted as published).
    var publishErrors: Int
    /// Distinct confirmed ids the handler ran for.
    var handled: Int
    /// Distinct confirmed ids parked in the dead letters, and why.
    var deadLettered: Int
    var deadLetterReasons: [String: Int]
    /// Confirmed ids neither handled nor dead-lettered.
    var lost: Int
    /// Extra handler runs for an id beyond its first (at-least-once).
    var duplicates: Int
    /// Times the worker process died and was started again (SIGKILL or a crash).
    var workerRestarts: Int
    /// Times a worker process lost its connection and recovered it (from its log).
    var workerReconnects: Int
    var seconds: Double
    /// What the scenario expects besides `lost == 0` (the poison scenario: the poison message dead-lettered with
    /// reason `redelivery-limit`).
    var passed: Bool
    var note: String

    static func table(_ rows: [ScenarioResult]) -> String {
        let header = [
            "fault", "published", "publish errors", "handled", "dead-lettered", "lost", "duplicates", "worker restarts",
            "worker reconnects", "seconds", "result",
        ]
        let cells = rows.map {
            [
                $0.fault, "\($0.published)", "\($0.publishErrors)", "\($0.handled)", "\($0.deadLettered)", "\($0.lost)",
                "\($0.duplicates)", "\($0.workerRestarts)", "\($0.workerReconnects)",
                String(format: "%.1f", $0.seconds), $0.passed ? "ok" : "FAILED",
            ]
        }
        let widths = header.indices.map { column in ([header] + cells).map { $0[column].count }.max() ?? 0 }
        func line(_ row: [String]) -> String {
            row.enumerated().map { index, cell in
                index == 0
                    ? cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[index] - cell.count) + cell
            }.joined(separator: "  ")
        }
        var text = ([header] + cells).map(line).joined(separator: "\n")
        for row in rows where !row.note.isEmpty { text += "\n\(row.fault): \(row.note)" }
        return text
    }
}
