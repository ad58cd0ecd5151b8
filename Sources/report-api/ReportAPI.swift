import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Warren
import WarrenAMQP
import WarrenHTTP
import WarrenLedger

/// The request path of background work, end to end: `POST /reports` validates, publishes a `report.requested` message
/// (confirmed by the broker) and answers 202 with `Location: /reports/{id}` at once; a worker makes the report (a
/// CSV, a few seconds of work) in the background; `GET /reports/{id}` answers from the job ledger: 202 while the job
/// is pending, running or retrying, 303 to `/reports/{id}/file` once it succeeded, 500 with the reason once it was
/// dead-lettered.
///
/// One process plays every part by default (`--role all`): the HTTP API with its embedded ledger, and the worker. In
/// production they run apart (`--role api`, `--role worker`), as many workers as the load needs.
@main
struct ReportAPI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report-api",
        abstract: "Warren's example of the request path: 202 now, the report later, its status from the ledger.")

    enum Role: String, ExpressibleByArgument { case all, api, worker }

    @Option(help: "all, api (HTTP and the ledger) or worker (makes the reports).") var role: Role = .all
    @Option(help: "The HTTP port; 0 lets the system choose (the address is printed).") var port = 8090
    @Option(help: "The address to bind.") var host = "127.0.0.1"
    @Option(help: "Where the worker writes the reports (and the API reads them).") var reportsDirectory = "reports"
    @Option(help: "The API's ledger: sqlite:PATH or postgres://user:password@host:port/database.")
    var ledger = "sqlite:report-api-ledger.sqlite"
    @Option(help: "Seconds a report takes to make.") var workSeconds = 3.0
    @Option(help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown log level '\(logLevel)'")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "report-api")
        let url = ProcessInfo.processInfo.environment["WARREN_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/"
        let directory = URL(fileURLWithPath: reportsDirectory, isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let reports = ReportFiles(directory: directory)

        let transport = RabbitMQTransport(
            endpoints: try AMQPEndpoint.parseList(url), connectionName: "report-api", logger: logger)
        let events = WarrenEventPublisher(transport: transport, logger: Logger(label: "warren.events"))
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        var store: (any LedgerStore)?

        if role != .worker {
            // The API's own ledger, fed with the reports queue's events only.
            let ledgerStore = try await LedgerLocation(ledger).open(logger: Logger(label: "warren.ledger.store"))
            store = ledgerStore
            let ledgerTransport = RabbitMQTransport(
                endpoints: try AMQPEndpoint.parseList(url), connectionName: "report-api-ledger", logger: logger)
            let recording = Ledger(
                transport: ledgerTransport, store: ledgerStore, queue: "report-api.ledger",
                bindingKey: "\(ReportRequested.queue).#",
                logger: Logger(label: "warren.ledger"))
            let publisher = WarrenPublisher(transport: transport, events: events)
            // The queue exists before the first request, whether a worker has run yet or not: a 202 means queued.
            try await publisher.declare(queue: ReportRequested.queue, retry: ReportMaker.retry)
            let api = ReportRoutes(publisher: publisher, store: ledgerStore, reports: reports)
            let router = Router()
            api.addRoutes(to: router)
            let app = Application(
                router: router, configuration: .init(address: .hostname(host, port: port), serverName: "report-api"),
                onServerRunning: { [host] channel in
                    FileHandle.standardOutput.write(
                        Data("listening on http://\(host):\(channel.localAddress?.port ?? 0)\n".utf8))
                },
                logger: logger.quietingServerCancellation())
            services.append(.init(service: app))
            services.append(.init(service: recording))
        }
        // Before the worker: a ServiceGroup stops its services in reverse order, so the worker stops (and sends its last
        // settlements' events) before the events close.
        services.append(.init(service: events))
        if role != .api {
            let worker = Worker(
                transport: transport,
                registrations: [ReportMaker(reports: reports, workSeconds: workSeconds).registration],
                configuration: WorkerConfiguration(events: events), logger: Logger(label: "warren"))
            services.append(.init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup))
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        logger.info(
            "report-api starting", metadata: ["role": "\(role.rawValue)", "reports_directory": "\(directory.path)"])
        if let store {
            // The store runs around the group, so that it stops after the API and the ledger that use it.
            try await store.withRunning {
                // Migrated before the API listens: a status read as soon as the port is open finds the tables.
                try await store.migrate()
                try await group.run()
            }
            try? await store.close()
        } else {
            try await group.run()
        }
    }
}

/// Asks for the sales report of one month.
struct ReportRequested: WarrenMessage {
    static var messageType: String { "report.requested" }
    static let queue = "reports"
    var reportID: String
    /// `yyyy-MM`.
    var month: String
}

/// Where reports are written: `<directory>/<report id>.csv`.
struct ReportFiles: Sendable {
    let directory: URL

    /// A report id is a lowercase UUID: anything else (`/../../srv/prices`) never names a file.
    static func isReportID(_ text: String) -> Bool {
        UUID(uuidString: text) != nil && text == text.lowercased()
    }

    /// A report id that is not one (``isReportID(_:)``), refused before any path is made of it.
    struct NotAReportID: Error, CustomStringConvertible {
        var description: String { "not a report id (a lowercase UUID)" }
    }

    func url(of reportID: String) -> URL { directory.appendingPathComponent("\(reportID).csv") }

    func exists(_ reportID: String) -> Bool {
        Self.isReportID(reportID) && FileManager.default.fileExists(atPath: url(of: reportID).path)
    }

    /// Written to a temporary file and renamed: a reader sees the whole report or none.
    /// - Throws: ``NotAReportID`` for an id that is not one (it comes from a message anyone may publish).
    func write(_ contents: String, for reportID: String) throws {
        guard Self.isReportID(reportID) else { throw NotAReportID() }
        let temporary = directory.appendingPathComponent(".\(reportID).csv.partial")
        try Data(contents.utf8).write(to: temporary)
        guard rename(temporary.path, url(of: reportID).path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url(of: reportID).path])
        }
    }
}
