import Foundation
import Logging
import Warren
import WarrenAMQP

/// What the dashboard asks of the broker about recurring jobs (``Scheduler``): the directory their leader keeps, and an
/// operator's run now, pause and resume.
public protocol ScheduleOperations: Sendable {
    /// The scheduler's scope this dashboard shows (`nil`: the unscoped scheduler).
    var scope: String? { get }
    /// The leader's directory, each schedule's pause flag read now; `nil` when no scheduler of ``scope`` has led.
    func directory() async throws -> ScheduleDirectory?
    /// Asks the leader for a run of schedule `stateName` now, as request `requestID` of `requestedBy`.
    func trigger(_ stateName: String, requestID: String, requestedBy: String) async throws
    /// Pauses or resumes schedule `stateName`.
    func setPaused(_ paused: Bool, stateName: String) async throws
}

/// ``ScheduleOperations`` over a ``RabbitMQTransport`` of the dashboard's own (connected on first use, reconnecting by
/// itself). Add ``transport`` to the `ServiceGroup` so that it closes at shutdown.
public struct AMQPScheduleOperations: ScheduleOperations {
    public let scope: String?
    public let transport: RabbitMQTransport

    public init(
        endpoints: [AMQPEndpoint], scope: String? = nil, logger: Logger = Logger(label: "warren.dashboard.schedules")
    ) {
        self.scope = scope
        self.transport = RabbitMQTransport(
            endpoints: endpoints, connectionName: "warren-dashboard schedules", publishRecoveryTimeout: .seconds(5),
            logger: logger)
    }

    public func directory() async throws -> ScheduleDirectory? {
        try await transport.scheduleDirectory(scope: scope)
    }

    public func trigger(_ stateName: String, requestID: String, requestedBy: String) async throws {
        try await transport.triggerSchedule(stateName, requestID: requestID, requestedBy: requestedBy)
    }

    public func setPaused(_ paused: Bool, stateName: String) async throws {
        try await transport.setSchedulePaused(paused, schedule: stateName)
    }
}
