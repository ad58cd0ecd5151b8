// The billing package's tests, from docs/testing.md: the handlers without a broker, then against a throwaway RabbitMQ.
import Billing
import Foundation
import Synchronization
import Testing
import Warren
import WarrenAMQP
import WarrenLocalBroker
import WarrenTesting

@Test func aFlakyGatewayIsRetriedAndADeclinedCardDeadLettered() async throws {
    let harness = try await WarrenTestHarness(registrations: Billing.registrations(gateway: Gateway()))
    let first = try await harness.send(ChargeCard(invoiceId: "inv-1-flaky", cents: 1200), to: Billing.charges)
    #expect(first.outcome == .retried(delay: .milliseconds(200), nextAttempt: 2))
    let second = try await harness.advance(by: .milliseconds(200))
    #expect(second.attempt == 2 && second.outcome == .acked)
    let declined = try await harness.send(ChargeCard(invoiceId: "inv-2-declined", cents: 900), to: Billing.charges)
    guard case .deadLettered(let reason) = declined.outcome else {
        Issue.record("expected a dead letter, got \(declined.outcome)")
        return
    }
    #expect(reason.kind == .rejected && reason.detail.contains("card declined"))
    #expect(harness.deadLetters(of: Billing.charges).count == 1)
    await harness.stop()
}

@Test func chargesAndReceiptsAgainstRabbitMQ() async throws {
    let broker = try await LocalBroker.shared()
    let transport = RabbitMQTransport(endpoints: [try AMQPEndpoint(uri: broker.amqpURL)])
    let receipts = Mutex<[String]>([])
    let settled = Mutex<[SettlementEvent]>([])
    let worker = Worker(
        transport: transport,
        registrations: Billing.registrations(gateway: Gateway(), onReceipt: { id in receipts.withLock { $0.append(id) } }),
        observer: { event in settled.withLock { $0.append(event) } })
    let running = Task { try await worker.run() }
    try await worker.waitUntilConsuming()
    let publisher = WarrenPublisher(transport: transport)
    for id in ["inv-10", "inv-11-flaky", "inv-12-declined"] {
        try await publisher.publish(ChargeCard(invoiceId: id, cents: 100), to: .queue(Billing.charges), messageID: id)
    }
    let deadline = ContinuousClock.now + .seconds(30)
    while receipts.withLock({ $0.count }) < 2 || settled.withLock({ $0.filter { $0.queue == Billing.charges }.count }) < 4,
        ContinuousClock.now < deadline
    {
        try await Task.sleep(for: .milliseconds(50))
    }
    #expect(Set(receipts.withLock { $0 }) == ["inv-10", "inv-11-flaky"])
    let letters = try await transport.deadLetters(of: Billing.charges)
    #expect(letters.map(\.messageID) == ["inv-12-declined"] && letters.first?.reason?.kind == .rejected)
    worker.shutdown()
    try await running.value
}
