-- Daily sales of the 14 days up to the report's day, for the daily-sales chart.
-- Parameters (ISO date strings): start (exclusive), day (inclusive).
SELECT
    order_date AS day,
    ROUND(SUM(amount), 2) AS sales
FROM orders
WHERE order_date > :start
  AND order_date <= :day
  AND status <> 'cancelled'
GROUP BY order_date
ORDER BY order_date
