import Logging
import Prometheus
import ServiceLifecycle
import Testing
import WarrenHTTP
import WarrenTestSupport

@_spi(WarrenTransport) @testable import Warren

@Suite("Health and metrics endpoints")
struct HTTPEndpointTests {
    @Test func aServiceFailingAtStartIsTheOnlyErrorNotTheCancelledServer() async throws {
        struct Failing: Service {
            let server: WarrenHTTPServer
            func run() async throws {
                _ = try await server.waitUntilListening()
                throw WarrenError(.topologyConflict, "the failure that deserves the one line")
            }
        }
        let lines = LogLines()
        let logger = Logger(label: "test-http") { _ in CapturingHandler(lines: lines) }
        let server = WarrenHTTPServer(endpoints: WarrenHealthEndpoints(), port: 0, logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [server, Failing(server: server)], logger: TestBroker.quietLogger()))
        await #expect(throws: WarrenError.self) { try await group.run() }
        let errors = lines.all.filter { ["error", "critical"].contains("\($0["level"] ?? "")") }.map {
            "\($0["message"] ?? "")"
        }
        #expect(errors.isEmpty, "the server's cancellation is no error: \(errors)")
        #expect(
            lines.all.contains { "\($0["message"] ?? "")".contains("serving health and metrics") }, "the server ran")
    }

    /// `<name>_<unit>`, with `help` as its help text (none when empty).
    static func name(_ name: String, _ unit: String, help: String = "") -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: unit, helpText: help)
    }

    @Test func aRegistryHoldingOneOfWarrensNamesInAnotherShapeIsAnErrorAtStart() throws {
        let registry = PrometheusCollectorRegistry()
        _ = registry.makeGauge(descriptor: Self.name("warren_messages", "total"))
        #expect {
            try WarrenPrometheus(registry: registry)
        } throws: { error in
            let error = error as? WarrenHTTPError
            return error?.code == .metricConflict && error?.message.contains("warren_messages_total") == true
                && error?.message.contains("gauge") == true
        }

        let unlabeled = PrometheusCollectorRegistry()
        _ = unlabeled.makeCounter(descriptor: Self.name("warren_reconnects", "total"))
        #expect(throws: WarrenHTTPError.self, "Warren labels it with the connection") {
            try WarrenPrometheus(registry: unlabeled)
        }

        let helped = PrometheusCollectorRegistry()
        _ = helped.makeCounter(
            descriptor: Self.name("warren_retries", "total", help: "the host's own help text"), labels: [("queue", "q")]
        )
        #expect(throws: WarrenHTTPError.self, "swift-metrics registrations carry no help text") {
            try WarrenPrometheus(registry: helped)
        }

        let hosts = PrometheusCollectorRegistry()
        _ = hosts.makeCounter(descriptor: Self.name("orders_placed", "total", help: "orders"), labels: [("shop", "a")])
        _ = hosts.makeCounter(
            descriptor: Self.name("warren_messages", "total"),
            labels: [("queue", "q"), ("type", "t"), ("outcome", "ack")])
        _ = hosts.makeDurationHistogram(
            descriptor: Self.name("warren_handler_duration", "seconds"), labels: [("queue", "q")],
            buckets: [.seconds(1)])
        #expect(throws: Never.self, "the host's own metrics and Warren's in their own shape fit") {
            try WarrenPrometheus(registry: hosts)
        }
    }

    @Test func aConflictingRegistrationLaterIsRefusedInsteadOfCrashing() throws {
        let prometheus = try WarrenPrometheus(logger: TestBroker.quietLogger())
        let factory = prometheus.factory
        let counter = factory.makeCounter(label: "jobs_total", dimensions: [("queue", "a")])
        counter.increment(by: 2)
        // Each of these would stop the process inside swift-prometheus.
        let gauge = factory.makeMeter(label: "jobs_total", dimensions: [("queue", "a")])
        gauge.set(5.0)
        _ = factory.makeCounter(label: "jobs_total", dimensions: [])
        _ = factory.makeTimer(label: WarrenMetric.messages.name, dimensions: [("queue", "a")])
        _ = factory.makeRecorder(
            label: WarrenMetric.handlerDuration.name, dimensions: [("queue", "a")], aggregate: true)
        #expect(prometheus.conflicts.count == 4, "\(prometheus.conflicts)")
        #expect(
            prometheus.conflicts.first?.hasPrefix("jobs_total: registered as a counter") == true,
            "\(prometheus.conflicts)")
        let text = String(decoding: prometheus.exposition(), as: UTF8.self)
        #expect(text.contains("jobs_total{queue=\"a\"} 2"), "the first registration works on: \(text)")
        // Another label set of the same shape is a new series, not a conflict.
        factory.makeCounter(label: "jobs_total", dimensions: [("queue", "b")]).increment(by: 1)
        #expect(prometheus.conflicts.count == 4)
    }

    @Test func readinessNeedsATransportAndEveryQueue() async throws {
        let endpoints = WarrenHealthEndpoints()
        #expect(endpoints.readiness().status == "not_ready", "nothing to report on is not ready")
        #expect(endpoints.liveness().isLive)
        try await withHTTPServer(endpoints) { port in
            #expect(await httpGet(port: port, "/health/ready").status == 503)
            #expect(await httpGet(port: port, "/health/live").status == 200)
            #expect(await httpGet(port: port, "/metrics").status == 404, "no registry given")
        }
    }

    @Test func theStallDetectorTimesAStallFromItsFirstObservation() {
        var detector = StallDetector()
        let start = ContinuousClock.now
        #expect(
            detector.observe(taken: 3, waiting: 5, freeSlots: 2, now: start) == nil,
            "the first look has nothing to compare")
        #expect(detector.observe(taken: 3, waiting: 5, freeSlots: 2, now: start + .seconds(1)) == .zero)
        #expect(detector.observe(taken: 3, waiting: 5, freeSlots: 2, now: start + .seconds(4)) == .seconds(3))
        #expect(
            detector.observe(taken: 4, waiting: 5, freeSlots: 2, now: start + .seconds(5)) == nil, "progress ends it")
        #expect(
            detector.observe(taken: 4, waiting: 5, freeSlots: 0, now: start + .seconds(9)) == nil,
            "busy slots are no stall")
        #expect(
            detector.observe(taken: 4, waiting: 0, freeSlots: 2, now: start + .seconds(12)) == nil,
            "nothing waiting is no stall")
        #expect(detector.observe(taken: 4, waiting: 1, freeSlots: 2, now: start + .seconds(13)) == .zero)
    }
}
