import ArgumentParser
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Tracing
import Warren
import WarrenAMQP
import WarrenHTTP

#if OTLP
    import OTel
#endif

/// The example host: a worker that sends welcome emails from the `emails` queue.
///
/// It reads `WARREN_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/`) and the other settings of
/// `docs/configuration.md` (environment, `--config FILE`, command-line options); `--transport memory` runs it without
/// a broker (it then seeds a small burst itself). SIGTERM or SIGINT drain it and it exits 0. With `--http-port`
/// (`WARREN_HTTP_PORT`) it serves `/health/ready`, `/health/live` and `/metrics` on 127.0.0.1 (`--http-host`,
/// `WARREN_HTTP_HOST`, to bind another address, e.g. `0.0.0.0` in a Kubernetes pod). Its heartbeat is 10 s
/// (`warren.amqp.heartbeat`) unless its URL chooses one, so that a frozen broker shows in readiness within 25 s.
/// Built with the `OTLP` trait (`swift build --traits OTLP`), `--otlp-endpoint URL` exports its traces with swift-otel
/// over OTLP/HTTP. It publishes job events for a ledger (`--no-events` turns them off; docs/events.md). With
/// `--partitions N` it also handles the ordered flow `order-events` (docs/partitions.md): each order's events in order,
/// the partitions shared among the instances, one holder each.
@main
struct OrdersWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "orders-worker", abstract: "Warren's example host: sends welcome emails from the 'emails' queue.")

    enum TransportKind: String, ExpressibleByArgument { case rabbitmq, memory }
    enum LogFormat: String, ExpressibleByArgument { case text, json }

    @Option(help: "rabbitmq (WARREN_AMQP_URL) or memory (no broker).") var transport: TransportKind = .rabbitmq
    @Option(help: "The work queue of the welcome emails.") var queue = "emails"
    @Option(help: "text or json (one JSON object per line).") var logFormat: LogFormat = .text
    @Option(help: "trace, debug, info, notice, warning, error or critical. Successful deliveries log at debug.")
    var logLevel: String = "debug"
    @Option(help: "Seconds running handlers may take to finish after SIGTERM (warren.grace.period; default 30).")
    var gracePeriod: Double?
    @Option(help: "A JSON settings file (see docs/configuration.md); environment variables override it.")
    var config: String?
    @Option(help: "Serve /health/ready, /health/live and /metrics on this port (WARREN_HTTP_PORT; off by default).")
    var httpPort: Int?
    @Option(help: "The address the HTTP port binds (WARREN_HTTP_HOST; default 127.0.0.1).")
    var httpHost: String?
    @Flag(help: "Publish no job events (by default they go to the exchange warren.events for a ledger).")
    var noEvents = false
    @Option(help: "Seconds between runs of the recurring cleanup job, led by one instance (0 turns it off).")
    var cleanupInterval = 10
    @Option(help: "The queue the cleanup's runs go to.") var cleanupQueue = "orders-cleanup"
    @Option(help: "Narrows the scheduler's election to the instances given the same scope (default: one per broker).")
    var schedulerScope: String?
    @Option(help: "Seconds between a standby's attempts to lead the scheduler (the failover time's second half).")
    var campaignInterval = 5
    @Option(
        help: "Export traces over OTLP/HTTP to this URL, e.g. http://127.0.0.1:4318/v1/traces (needs the OTLP trait).")
    var otlpEndpoint: String?
    @Option(
        help: "Also handle the ordered flow of order events, keyed by order id, over this many partitions (0: off).")
    var partitions = 0
    @Option(help: "The ordered flow's exchange (its queues are <name>.partition.<n>).") var orderEventsFlow =
        "order-events"
    @Option(help: "Percent of order events whose first attempt fails (retried in place), to watch a partition wait.")
    var orderEventFailurePercent = 0

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown log level '\(logLevel)'")
        }
        let format = logFormat
        LoggingSystem.bootstrap { label in
            switch format {
            case .json: return JSONLogHandler(label: label, level: level)
            case .text:
                var handler = StreamLogHandler.standardOutput(label: label)
                handler.logLevel = level
                return handler
            }
        }
        let logger = Logger(label: "orders-worker")

        var overrides: [String: String] = [:]
        if let gracePeriod { overrides["warren.grace.period"] = "\(gracePeriod)" }
        if let httpPort { overrides["warren.http.port"] = "\(httpPort)" }
        if let httpHost { overrides["warren.http.host"] = httpHost }
        let reader = try await WarrenSettings.reader(overrides: overrides, jsonFile: config)
        var settings = try WarrenSettings(config: reader)
        if settings.heartbeat == nil { settings.heartbeat = .seconds(10) }
        let http = reader.int(forKey: "warren.http.port").map {
            (host: reader.string(forKey: "warren.http.host", default: "127.0.0.1"), port: $0)
        }
        // Metrics are bootstrapped before anything makes one: with HTTP on, they feed the /metrics registry.
        let prometheus = try http.map { _ in try WarrenPrometheus() }
        if let prometheus { MetricsSystem.bootstrap(prometheus.factory) }
        // Traces are bootstrapped before the worker and its publisher take the process's tracer.
        let exporter = try tracingExporter(logger: logger)

        let sender = SimulatedMailSender()
        let defaults = HandlerOptions(
            prefetch: 20, maxConcurrentHandlers: 8,
            retry: RetryPolicy(maxAttempts: 4, backoff: .explicit([.seconds(1), .seconds(2), .seconds(4)])),
            timeout: .seconds(30))
        let emails = HandlerRegistration(
            WelcomeEmail.self, queue: queue, options: try settings.options(for: queue, defaults: defaults)
        ) { email, context in
            try await sender.send(email, attempt: context.attempt)
            context.logger.debug("welcome email sent", metadata: ["user_id": "\(email.userId)"])
        }

        guard cleanupInterval >= 0, cleanupInterval <= 86_400 * 366 else {
            throw ValidationError("--cleanup-interval takes 0 (off) to 31622400 seconds")
        }
        guard campaignInterval >= 1, campaignInterval <= 3600 else {
            throw ValidationError("--campaign-interval takes 1 to 3600 seconds")
        }
        var registrations = [emails]
        if partitions > 0 {
            guard (0...100).contains(orderEventFailurePercent) else {
                throw ValidationError("--order-event-failure-percent takes 0 to 100")
            }
            let flow: PartitionedFlow
            do {
                flow = try PartitionedFlow(orderEventsFlow, partitions: partitions)
            } catch let error as WarrenError {
                throw ValidationError(error.message)
            }
            registrations.append(orderEvents(flow, failurePercent: orderEventFailurePercent))
        }
        if cleanupInterval > 0 {
            registrations.append(
                HandlerRegistration(OrdersCleanup.self, queue: cleanupQueue) { cleanup, _ in
                    // A real host removes what expired before `cleanup.scheduledFor` here. The worker logs one line
                    // per run, at info, with `schedule`, `scheduled_for` and `outcome`.
                    _ = cleanup
                })
        }

        let chosenTransport: any WarrenTransport
        var seed: InMemoryTransport<ContinuousClock>?
        switch transport {
        case .rabbitmq:
            var rabbit = settings
            rabbit.amqpURL = settings.amqpURL ?? "amqp://guest:guest@127.0.0.1:5672/"
            chosenTransport = try rabbit.transport(connectionName: "orders-worker")
        case .memory:
            let memory = InMemoryTransport()
            seed = memory
            chosenTransport = memory
        }
        var configuration = settings.workerConfiguration
        let events =
            noEvents ? nil : WarrenEventPublisher(transport: chosenTransport, logger: Logger(label: "warren.events"))
        configuration.events = events
        let worker = Worker(
            transport: chosenTransport, registrations: registrations, configuration: configuration,
            logger: Logger(label: "warren"))
        let scheduler =
            try cleanupInterval == 0
            ? nil
            : Scheduler(
                jobs: [
                    RecurringJob(
                        "cleanup", schedule: .every(.seconds(cleanupInterval)), queue: cleanupQueue,
                        missedTicks: .runOnce
                    ) { OrdersCleanup(scheduledFor: $0) }
                ], transport: chosenTransport, scope: schedulerScope, campaignInterval: .seconds(campaignInterval),
                appID: "orders-worker",
                logger: Logger(label: "warren.scheduler"))
        logger.info("orders-worker starting", metadata: ["transport": "\(transport.rawValue)"])
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let http {
            // Listed first, so that it stops last: probes see the worker drain (503) until the process exits.
            let endpoints = WarrenHealthEndpoints(
                workers: [worker], elections: scheduler.map { [$0.election] } ?? [], prometheus: prometheus)
            services.append(
                .init(
                    service: WarrenHTTPServer(
                        endpoints: endpoints, host: http.host, port: http.port, logger: Logger(label: "warren.http"))))
        }
        // The exporter and the events stop after the worker: the spans and events of the last deliveries still go out.
        if let exporter { services.append(.init(service: exporter)) }
        if let events { services.append(.init(service: events)) }
        services.append(.init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup))
        // After the worker: on a shutdown the scheduler resigns first, so a standby leads while this one drains.
        if let scheduler { services.append(.init(service: scheduler)) }
        if let seed {
            // The in-memory demo's burst, once the worker consumes; its end leaves the group running.
            services.append(
                .init(
                    service: OneOff { [logger] in
                        await cancelWhenGracefulShutdown {
                            do {
                                try await worker.waitUntilConsuming()
                                try await seedBurst(into: seed, logger: logger)
                            } catch {
                                logger.warning("the demo burst was not published", metadata: ["error": "\(error)"])
                            }
                        }
                    }, successTerminationBehavior: .ignore))
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
        logger.info("orders-worker stopped")
    }

    /// The order events' handler: one line per attempt with `order_id`, `seq`, `attempt`, `partition` and `outcome`
    /// (`ok`, or `failed` for an injected failure, retried in place while the partition waits).
    private func orderEvents(_ flow: PartitionedFlow, failurePercent: Int) -> HandlerRegistration {
        let options = HandlerOptions(
            prefetch: 5, maxConcurrentHandlers: 1,
            retry: RetryPolicy(maxAttempts: 4, backoff: .explicit([.milliseconds(50), .seconds(1), .seconds(2)])),
            timeout: .seconds(30))
        return HandlerRegistration(OrderEvent.self, flow: flow, options: options) { event, context in
            // The same events fail in every process and every run: a hash of the order and its number.
            let fails = context.attempt == 1 && Self.percentile(of: "\(event.orderId)/\(event.seq)") < failurePercent
            context.logger.info(
                "order event",
                metadata: [
                    "order_id": "\(event.orderId)", "seq": .stringConvertible(event.seq),
                    "attempt": .stringConvertible(context.attempt), "partition": "\(context.queue)",
                    "outcome": fails ? "failed" : "ok",
                ])
            if fails { throw InjectedFailure() }
        }
    }

    /// 0..<100, the same for the same text in every process (FNV-1a).
    static func percentile(of text: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return Int(hash % 100)
    }

    struct InjectedFailure: Error, CustomStringConvertible {
        var description: String { "an injected failure (--order-event-failure-percent)" }
    }

    /// The swift-otel exporter for `--otlp-endpoint`, with the process's tracer bootstrapped to it; `nil` without one.
    /// - Throws: `ValidationError` when the endpoint is given to a build without the OTLP trait.
    private func tracingExporter(logger: Logger) throws -> (any Service)? {
        guard let otlpEndpoint else { return nil }
        #if OTLP
            var configuration = OTel.Configuration.default
            configuration.serviceName = "orders-worker"
            configuration.traces.otlpExporter.endpoint = otlpEndpoint
            configuration.traces.batchSpanProcessor.scheduleDelay = .milliseconds(500)
            configuration.metrics.enabled = false
            configuration.logs.enabled = false
            let (tracer, service) = try OTel.makeTracingBackend(configuration: configuration)
            InstrumentationSystem.bootstrap(tracer)
            logger.info("exporting traces over OTLP/HTTP", metadata: ["endpoint": "\(otlpEndpoint)"])
            return service
        #else
            throw ValidationError(
                "--otlp-endpoint needs a build with the OTLP trait: swift build --traits OTLP --product orders-worker (or make otlp-check)"
            )
        #endif
    }

    /// With no broker, something has to publish: a plain, a flaky, a bouncing, a slow and a malformed message.
    private func seedBurst(into transport: InMemoryTransport<ContinuousClock>, logger: Logger) async throws {
        let publisher = WarrenPublisher(transport: transport, appID: "orders-worker-seed")
        for (user, address) in [
            ("u1", "ada@example.com"), ("u2", "bob@flaky.example"), ("u3", "cy@bounce.example"),
            ("u4", "di@slow.example"),
        ] {
            try await publisher.publish(WelcomeEmail(userId: user, email: address), to: .queue(queue))
        }
        try await transport.publish(
            Array(#"{"userId": 5, "email": }"#.utf8), to: .queue(queue),
            properties: AMQPProperties(
                contentType: "application/json", messageID: "malformed-1", type: WelcomeEmail.messageType))
        logger.info("seeded 5 messages into the in-memory queue", metadata: ["queue": "\(queue)"])
    }
}

/// Work that runs once inside the service group (cancelled with it, and by its graceful shutdown), then ends.
struct OneOff: Service {
    let work: @Sendable () async throws -> Void

    init(_ work: @escaping @Sendable () async throws -> Void) {
        self.work = work
    }

    func run() async throws {
        try await work()
    }
}
