import Warren

/// Sent when a user signs up: the worker sends them a welcome email.
struct WelcomeEmail: WarrenMessage {
    static var messageType: String { "email.welcome" }
    var userId: String
    var email: String
}
