// billing-worker: the host, from docs/events.md's whole host and docs/operating.md's HTTP server.
import Billing
import Configuration
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Warren
import WarrenAMQP
import WarrenHTTP

let logger = Logger(label: "billing")
do {
    let prometheus = try WarrenPrometheus()
    MetricsSystem.bootstrap(prometheus.factory)
    let settings = try WarrenSettings(config: try await WarrenSettings.reader())
    let transport = try settings.transport(connectionName: "billing-worker")
    let events = WarrenEventPublisher(transport: transport)
    var configuration = settings.workerConfiguration
    configuration.events = events
    let worker = Worker(
        transport: transport, registrations: Billing.registrations(gateway: Gateway()), configuration: configuration, logger: logger)
    let port = Int(ProcessInfo.processInfo.environment["BILLING_HTTP_PORT"] ?? "") ?? 8080
    let http = WarrenHTTPServer(endpoints: WarrenHealthEndpoints(workers: [worker], prometheus: prometheus), port: port)
    try await ServiceGroup(configuration: .init(
        services: [.init(service: http), .init(service: events), .init(service: worker, successTerminationBehavior: .gracefullyShutdownGroup)],
        gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)).run()
} catch {
    FileHandle.standardError.write(Data("billing-worker: \(error)\n".utf8))
    exit(1)
}
