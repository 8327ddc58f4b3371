"""Outside events in: facts from other systems that may resume jobs waiting for them.

The data flow, one module a step:

- `http`: `POST /workflow-queue/events`, served by the API app, hands the raw body on;
- `consumer`: `conveyor events`, an aio-pika consumer of the `workflow.events` topic exchange,
  hands each message's body on (its routing key is the default type);
- `parse`: both doors turn the bytes into one `OutsideEventIn` the same way, or refuse them;
- then `Jobs.record_outside_event` stores the event once per id in the event store, where the
  relay matches it to the waits of running jobs (`conveyor.relay.waits`).
"""
