import Foundation
import Warren

/// Sent when a user signs up: the worker sends them a welcome email.
struct WelcomeEmail: WarrenMessage {
    static var messageType: String { "email.welcome" }
    var userId: String
    var email: String
}

/// The recurring cleanup's run: what a real worker would do here is remove expired carts or sessions older than
/// `scheduledFor` minus a day.
struct OrdersCleanup: WarrenMessage {
    static var messageType: String { "orders.cleanup" }
    var scheduledFor: Date
}
