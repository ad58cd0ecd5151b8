// The billing package's handlers, written from Warren's README and docs/ alone (make first-day builds and runs it).
import Foundation
import Logging
import Metrics
import Warren
import WarrenAMQP

public struct ChargeCard: WarrenMessage {
    public static var messageType: String { "billing.charge" }
    public var invoiceId: String
    public var cents: Int
    public init(invoiceId: String, cents: Int) {
        self.invoiceId = invoiceId
        self.cents = cents
    }
}

public struct SendReceipt: WarrenMessage {
    public static var messageType: String { "billing.receipt" }
    public var invoiceId: String
    public init(invoiceId: String) { self.invoiceId = invoiceId }
}

public struct GatewayTimeout: Error, CustomStringConvertible {
    public var description: String { "the payment gateway did not answer" }
}

/// A payment gateway that times out on the first try of an invoice whose id ends in `-flaky` and declines one whose
/// id ends in `-declined`.
public actor Gateway {
    private var tried: Set<String> = []
    public private(set) var charged: [String] = []
    public init() {}

    public func charge(_ charge: ChargeCard) throws {
        if charge.invoiceId.hasSuffix("-declined") { throw Reject("card declined for \(charge.invoiceId)") }
        if charge.invoiceId.hasSuffix("-flaky"), tried.insert(charge.invoiceId).inserted { throw GatewayTimeout() }
        charged.append(charge.invoiceId)
    }
}

public enum Billing {
    public static let charges = "billing.charges"
    public static let receipts = "billing.receipts"

    /// The handlers: a charge retried twice (after 200 ms, then 400 ms), dead-lettered when declined; a receipt for
    /// each charge, published by its handler.
    public static func registrations(gateway: Gateway, onReceipt: @escaping @Sendable (String) -> Void = { _ in }) -> [HandlerRegistration] {
        let charged = Counter(label: "billing_charged_total")
        return [
            HandlerRegistration(
                ChargeCard.self, queue: charges,
                options: HandlerOptions(retry: RetryPolicy(maxAttempts: 3, backoff: .explicit([.milliseconds(200), .milliseconds(400)])))
            ) { charge, context in
                try await gateway.charge(charge)
                charged.increment()
                _ = try await context.publish(SendReceipt(invoiceId: charge.invoiceId), to: .queue(Billing.receipts))
            },
            HandlerRegistration(SendReceipt.self, queue: receipts) { receipt, context in
                context.logger.info("receipt sent", metadata: ["invoice_id": "\(receipt.invoiceId)"])
                onReceipt(receipt.invoiceId)
            },
        ]
    }
}
