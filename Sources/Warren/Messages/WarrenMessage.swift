/// A message type that Warren can publish and route: `Codable` for its body, and named on the wire by the AMQP
/// `type` property.
///
/// ```swift
/// struct WelcomeEmail: WarrenMessage {
///     static var messageType: String { "email.welcome" }
///     var userId: String
///     var email: String
/// }
/// ```
public protocol WarrenMessage: Codable, Sendable {
    /// The wire name of this type (the AMQP `type` property). Keep it stable: renaming it strands messages in flight.
    static var messageType: String { get }
}
