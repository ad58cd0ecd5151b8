import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Warren
import WarrenAMQP

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The message the chaos suite publishes.
struct ChaosJob: WarrenMessage {
    static var messageType: String { "chaos.job" }
    var n: Int
}

/// A worker process for the chaos suite: handles `chaos.job` messages by appending their message id to a ledger file
/// (one id per line, written before the ack, so a line means "the handler ran"). The message whose id is
/// `--poison-id` crashes the process, as a handler with a fatal bug would.
struct ChaosWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "A worker process the chaos run starts and kills.")

    @Option(name: .customLong("url"), help: "A node's AMQP URL; repeat for a cluster.") var urls: [String]
    @Option var queue: String
    @Option(help: "The file handled ids are appended to.") var ledger: String
    @Option var prefetch: UInt16 = 20
    @Option var concurrency: Int = 4
    @Option(help: "Milliseconds each handler works.") var workMilliseconds: Int = 1
    @Option var redeliveryLimit: Int = 10
    @Option(help: "The message id whose handler crashes the process.") var poisonID: String?
    @Flag(help: "Declare quorum queues.") var quorum = false
    @Option(help: "Bodies larger than this many bytes are dead-lettered undecoded.") var maxBytes = 16 * 1024 * 1024

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .notice
            return handler
        }
        let descriptor = open(ledger, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        guard descriptor >= 0 else { throw ValidationError("cannot open the ledger \(ledger)") }
        let ledger = LedgerWriter(descriptor: descriptor)
        let poisonID = poisonID
        let work = Duration.milliseconds(workMilliseconds)
        let registration = HandlerRegistration(
            ChaosJob.self, queue: queue,
            options: HandlerOptions(
                prefetch: prefetch, maxConcurrentHandlers: concurrency, retry: .default, timeout: .seconds(30))
        ) { _, context in
            let id = context.messageID ?? "?"
            if id == poisonID { fatalError("chaos: the poison message \(id) crashes its worker") }
            if work > .zero { try await Task.sleep(for: work) }
            ledger.append(id)
        }
        let transport = RabbitMQTransport(
            endpoints: try urls.map { try AMQPEndpoint(uri: $0) }, connectionName: "warren-chaos-worker",
            queueType: quorum ? .quorum : .classic, logger: Logger(label: "chaos.worker"))
        let worker = Worker(
            transport: transport, registrations: [registration],
            configuration: WorkerConfiguration(
                maximumMessageBytes: maxBytes, gracePeriod: .seconds(10),
                recovery: RecoveryPolicy(initialDelay: .milliseconds(200), maximumDelay: .seconds(2)),
                redeliveryLimit: redeliveryLimit),
            logger: Logger(label: "chaos.worker"))
        let logger = Logger(label: "chaos.worker")
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup)],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// Appends lines with one `write(2)` each on an `O_APPEND` descriptor: each line lands whole, and it is in the
/// kernel's hands as soon as the call returns, so it survives the process being killed.
struct LedgerWriter: Sendable {
    let descriptor: Int32

    func append(_ id: String) {
        let line = Array((id + "\n").utf8)
        _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    }
}
