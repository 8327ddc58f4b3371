"""The relay: dispatcher of ready stages and durable timers."""
