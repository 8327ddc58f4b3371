-- Tenant settings (conveyor/store/tenants.py): what an organisation set; a NULL column
-- or a rate it does not name takes the default from the settings (CONVEYOR_TENANT_*).
CREATE TABLE tenant_settings (
    organization text PRIMARY KEY,
    max_running integer CHECK (max_running >= 0),
    priority integer CHECK (priority BETWEEN 1 AND 100),
    -- {"github_api": {"amount": 5000, "period": "h"}, ...}
    rates jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at timestamptz NOT NULL DEFAULT now()
);
