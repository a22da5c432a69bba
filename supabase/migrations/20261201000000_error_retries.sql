-- Every failure leaves a row: retryable failures are recorded too, with SQS's receive
-- count and whether SQS delivers the message again. Rows written before this migration
-- stay valid: they were all permanent errors (or "not downloaded" skips), acknowledged,
-- which is what the defaults say.

alter table public.extraction_errors
    add column if not exists retryable boolean not null default false,  -- true: the message went back to SQS
    add column if not exists attempt   integer          default null,   -- SQS ApproximateReceiveCount (null outside SQS)
    add column if not exists final     boolean not null default true;   -- false: SQS will deliver it again

comment on column public.extraction_errors.retryable is
    'true: a passing fault or a setup to fix; the message went back to SQS';
comment on column public.extraction_errors.attempt is
    'SQS ApproximateReceiveCount of the delivery that failed (null outside SQS)';
comment on column public.extraction_errors.final is
    'true: no further delivery (acknowledged, or the last receive before the dead-letter queue, MAX_RECEIVES)';
