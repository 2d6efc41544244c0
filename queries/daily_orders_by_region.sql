-- The day's orders, region by region (in region_id order: the same on every database, whatever its
-- collation), for the daily-sales attachment: one row per order.
-- Parameter (ISO date string): day.
SELECT
    r.name AS region,
    o.order_id,
    o.created_at,
    o.status,
    o.amount
FROM orders o
JOIN regions r ON r.region_id = o.region_id
WHERE o.order_date = :day
  AND o.status <> 'cancelled'
ORDER BY o.region_id, o.created_at, o.order_id
