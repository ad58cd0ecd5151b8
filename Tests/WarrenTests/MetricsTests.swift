import Foundation
import Logging
import Metrics
import MetricsTestKit
import Testing
import Warren
import WarrenHTTP
import WarrenTestSupport
import WarrenTesting

/// swift-metrics can be bootstrapped once per process; every test shares it: TestMetrics for looking at single
/// instruments, and Warren's Prometheus registry for what `/metrics` serves.
let testMetrics: TestMetrics = bootstrappedMetrics.test
let testPrometheus: WarrenPrometheus = bootstrappedMetrics.prometheus
private let bootstrappedMetrics: (test: TestMetrics, prometheus: WarrenPrometheus) = {
    let metrics = TestMetrics()
    let prometheus = try! WarrenPrometheus(logger: TestBroker.quietLogger())
    MetricsSystem.bootstrap(MultiplexMetricsHandler(factories: [metrics, prometheus.factory]))
    return (metrics, prometheus)
}()

@Suite("Metrics")
struct MetricsTests {
    @Test func settlementsAreCountedAndTimedByQueueAndType() async throws {
        let metrics = testMetrics
        let queue = "metrics-\(UInt32.random(in: 0...UInt32.max))"
        let registration = HandlerRegistration(
            WelcomeEmail.self, queue: queue,
            options: HandlerOptions(retry: RetryPolicy(maxAttempts: 2, backoff: .explicit([.seconds(1)])))
        ) { email, _ in
            if email.email.hasSuffix("bounce.example") { throw Reject("no such mailbox") }
            if email.email.hasSuffix("flaky.example") { throw Flaky() }
        }
        let harness = try await WarrenTestHarness(registrations: [registration])
        try await harness.send(WelcomeEmail(userId: "1", email: "a@example.com"), to: queue)
        try await harness.send(WelcomeEmail(userId: "2", email: "b@bounce.example"), to: queue)
        try await harness.send(WelcomeEmail(userId: "3", email: "c@flaky.example"), to: queue)
        await harness.stop()

        let dimensions = [("queue", queue), ("type", "email.welcome")]
        #expect(metrics.counterTotal(label: "warren_messages_total", dimensions: dimensions) == 3)
        #expect(
            metrics.counterTotal(label: "warren_messages_total", dimensions: dimensions + [("outcome", "ack")]) == 1)
        #expect(
            metrics.counterTotal(label: "warren_messages_total", dimensions: dimensions + [("outcome", "dead-letter")])
                == 1)
        #expect(metrics.counterTotal(label: "warren_retries_total", dimensions: dimensions) == 1)
        #expect(
            metrics.counterTotal(label: "warren_dead_letters_total", dimensions: dimensions + [("reason", "rejected")])
                == 1)
        #expect(try metrics.expectTimer("warren_queue_wait_seconds", dimensions).values.count == 3)
        let timer = try metrics.expectTimer("warren_handler_duration_seconds", dimensions)
        #expect(timer.values.count == 3)
        let gauge = try metrics.expectGauge("warren_handlers_in_flight", [("queue", queue)])
        #expect(gauge.lastValue == 0)
    }
}

@Suite("JSON logs")
struct JSONLogHandlerTests {
    @Test func numbersAreNumbersAndTheOutputCanBeChosen() throws {
        var descriptors: [Int32] = [0, 0]
        #expect(pipe(&descriptors) == 0)
        defer {
            close(descriptors[0])
            close(descriptors[1])
        }
        var logger = Logger(label: "test") { JSONLogHandler(label: $0, output: .fileDescriptor(descriptors[1])) }
        logger[metadataKey: "queue"] = "emails"
        logger.info(
            "settled",
            metadata: [
                "attempt": .stringConvertible(2), "duration_ms": .stringConvertible(Int64(17)),
                "ratio": .stringConvertible(0.5),
                "duplicate": .stringConvertible(true), "message_id": "42",
            ])
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = read(descriptors[0], &buffer, buffer.count)
        let line = try #require(String(validating: buffer[..<max(0, count)], as: UTF8.self))
        #expect(line.hasSuffix("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["attempt"] as? Int == 2 && object["duration_ms"] as? Int == 17, "\(line)")
        #expect(object["ratio"] as? Double == 0.5 && object["duplicate"] as? Bool == true, "\(line)")
        #expect(object["message_id"] as? String == "42", "a string stays a string, digits or not")
        #expect(line.contains(#""attempt":2"#) && line.contains(#""message_id":"42""#))
        #expect(object["queue"] as? String == "emails" && object["message"] as? String == "settled")
    }
}
