import MetricsTestKit
import Testing
import Warren
import WarrenTestSupport
import WarrenTesting

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
