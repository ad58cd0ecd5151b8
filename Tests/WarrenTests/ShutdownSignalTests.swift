import Logging
import Testing
import WarrenTestSupport

@testable import Warren

@Suite("Shutdown signal")
struct ShutdownSignalTests {
    @Test func eachConsumerWaitsForTheShutdownWhileItRunsAndNoLonger() async throws {
        let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let registrations = ["emails", "invoices"].map { queue in
            HandlerRegistration(WelcomeEmail.self, queue: queue) { _, _ in }
        }
        let worker = Worker(transport: InMemoryTransport(), registrations: registrations, logger: quiet)
        let running = Task { try await worker.run() }
        try await worker.waitUntilConsuming(timeout: .seconds(10))
        // One watcher per consumer, a child of that consumer's run: it cancels the consumer on a shutdown and ends
        // with the run, so consumers that come and go (every reconnection) leave nothing behind. Two queues, each with
        // its `.redelivered` queue: four consumers, and the worker's grace-period watch.
        #expect(
            try await eventually { worker.shutdownSignal.waiterCount == 5 },
            "\(worker.shutdownSignal.waiterCount) watchers")
        // Cancelled, not shut down: the signal never fires, so only the end of each run can take its watcher away.
        running.cancel()
        _ = try? await running.value
        #expect(worker.shutdownSignal.waiterCount == 0, "\(worker.shutdownSignal.waiterCount) watchers left")
        #expect(!worker.isConsuming && !worker.shutdownSignal.isTriggered)

        let signal = ShutdownSignal()
        signal.trigger()
        try await signal.wait()  // triggered before: returns at once
    }
}
